"""The wheelhouse for an offline GPU host: bench's dependency tree less what the host has."""

from importlib.metadata import version

from bench.lab.wheelhouse import GPU_IMAGE_PACKAGES, missing_packages


def test_the_gpu_host_gets_what_it_lacks_at_the_versions_tested_here():
    have = set(GPU_IMAGE_PACKAGES)
    packages = missing_packages("bench", have, "3.12")
    # what the GPU image lacks (its page lists none of these), each at the version installed here
    for name in ("hydra-core", "omegaconf", "antlr4-python3-runtime", "jiwer", "rapidfuzz", "openai-whisper",
                 "datasets", "mistral-common", "pydantic", "soundfile", "soxr", "submitit"):  # fmt: skip
        assert packages[name] == version(name)
    # what it has is never carried: no CUDA wheels, no second torch or numpy
    assert not set(packages) & have
    # transformers is carried even though the host has it, and with it what it needs that the host
    # lacks: at the locked 5.25.0 (constraints.txt), kernels, which needs tomlkit
    with_transformers = missing_packages("bench", have - {"transformers"}, "3.12")
    assert version("transformers") == "5.25.0"
    assert set(with_transformers) - set(packages) == {"transformers", "kernels", "tomlkit"}
    assert "torch" not in packages and not any(name.startswith("nvidia-") for name in packages)


def test_markers_are_evaluated_for_the_host_not_for_this_machine():
    from packaging.requirements import Requirement

    from bench.lab.wheelhouse import target_environment

    old_python = Requirement('tomli; python_version < "3.11"').marker
    assert not old_python.evaluate(target_environment("3.12")) and old_python.evaluate(target_environment("3.10"))
    assert not Requirement('pywin32; sys_platform == "win32"').marker.evaluate(target_environment("3.12"))
    assert Requirement('uvloop; platform_system == "Linux"').marker.evaluate(target_environment("3.12"))


def test_the_host_stand_in_has_what_is_not_carried_pinned_where_the_image_version_is_known():
    from bench.lab.wheelhouse import GPU_IMAGE_VERSIONS, host_requirements

    have = set(GPU_IMAGE_PACKAGES)
    host = host_requirements("bench", have, "3.12", GPU_IMAGE_VERSIONS)
    names = {line.split("==")[0] for line in host}
    carried = set(missing_packages("bench", have - {"transformers"}, "3.12"))
    # both come from bench's tree (the rest of it hangs below host packages), only transformers is both
    tree = set(missing_packages("bench", set(), "3.12"))
    assert names | carried <= tree and names & carried == {"transformers"}
    assert {"torch==2.11.0", "transformers==5.17.0", "numpy==2.5.2", "pandas", "pyarrow"} <= set(host)
    # no CUDA library wheels (the pinned torch brings its own); NVML's pure-Python binding is bench's
    cuda_libraries = {name for name in names if name.startswith("nvidia-")} - {"nvidia-ml-py"}
    assert "hydra-core" not in names and not cuda_libraries


def test_the_check_names_a_module_that_does_not_import_and_a_folder_too_big_to_carry(tmp_path, monkeypatch):
    from bench.lab import wheelhouse

    assert wheelhouse.check(tmp_path) == []  # every module a plan imports imports here
    with open(tmp_path / "big-1.0-py3-none-any.whl", "wb") as f:
        f.truncate((wheelhouse.CARRY_LIMIT_MIB + 1) * 2**20)
    monkeypatch.setattr(wheelhouse, "PLAN_MODULES", ("json", "no_such_module_here"))
    problems = wheelhouse.check(tmp_path)
    assert problems[0].startswith("no_such_module_here does not import: ModuleNotFoundError")
    assert problems[1] == f"{tmp_path} holds 65.0 MiB of wheels: over the 64 MiB one call carries"
    assert len(problems) == 2


def test_a_host_package_too_old_for_a_carried_one_is_carried_with_what_the_newer_one_needs():
    """The 2026-12-04 lease: the image's huggingface-hub 1.33 failed transformers 5.25's
    >=2.4.0,<3.0 and stopped bench at import; it ran once these were carried by hand."""
    from bench.lab.wheelhouse import ALWAYS_CARRY, GPU_IMAGE_VERSIONS, NEVER_CARRIED, host_packages

    have = host_packages(None)
    assert have["huggingface-hub"] == GPU_IMAGE_VERSIONS["huggingface-hub"] == "1.33.0"
    kept = []
    packages = missing_packages("bench", have, "3.12", ALWAYS_CARRY, kept)
    assert packages["transformers"] == "5.25.0" and packages["huggingface-hub"] == version("huggingface-hub") == "2.4.0"
    carried_by_hand = ("httpx2", "httpcore2", "truststore", "click", "idna", "anyio", "h11")
    assert {name: packages.get(name) for name in carried_by_hand} == {name: version(name) for name in carried_by_hand}
    # never imported offline, though huggingface-hub asks for it on x86-64
    assert "hf-xet" in NEVER_CARRIED and "hf-xet" not in packages
    # a host version that meets every requirement stays the host's (tokenizers 0.23.2); numpy 2.5.2 fails
    # mistral-common's bound but stays too, and that is said: the host's torch was built against it
    assert "tokenizers" not in packages and "numpy" not in packages and "torch" not in packages
    assert set(kept) == {
        'numpy 2.5.2 on the host fails numpy<2.4,>=1.25; python_version <= "3.12": kept (KEPT_ON_HOST)'
    }
    # as the wheelhouse of the lease chose (names only, transformers treated as missing): no hub
    assert "huggingface-hub" not in missing_packages("bench", set(have) - {"transformers"}, "3.12")


def test_a_freeze_of_the_host_gives_every_version(tmp_path):
    from bench.lab.wheelhouse import ALWAYS_CARRY, host_packages

    freeze = tmp_path / "freeze.txt"
    freeze.write_text("huggingface-hub==2.4.0\nclick==8.5.1\nregex==2024.1.1\nlocal-pkg @ file:///x\n")
    have = host_packages(freeze)
    assert have == {"huggingface-hub": "2.4.0", "click": "8.5.1", "regex": "2024.1.1", "local-pkg": None}
    packages = missing_packages("bench", have, "3.12", ALWAYS_CARRY)
    assert "huggingface-hub" not in packages and "click" not in packages  # new enough
    assert packages["regex"] == version("regex")  # transformers 5.25 needs regex>=2025.10.22
