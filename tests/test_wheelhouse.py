"""The wheelhouse for an offline GPU host: bench's dependency tree less what the host has."""

from importlib.metadata import version

from bench.wheelhouse import GPU_IMAGE_PACKAGES, missing_packages


def test_the_gpu_host_gets_what_it_lacks_at_the_versions_tested_here():
    have = set(GPU_IMAGE_PACKAGES)
    packages = missing_packages("bench", have, "3.12")
    # what the GPU image lacks (its page lists none of these), each at the version installed here
    for name in ("hydra-core", "omegaconf", "antlr4-python3-runtime", "jiwer", "rapidfuzz", "openai-whisper",
                 "datasets", "mistral-common", "pydantic", "soundfile", "soxr", "submitit"):  # fmt: skip
        assert packages[name] == version(name)
    # what it has is never carried: no CUDA wheels, no second torch or numpy
    assert not set(packages) & have
    with_transformers = missing_packages("bench", have - {"transformers"}, "3.12")
    assert set(with_transformers) - set(packages) == {"transformers"}  # its own needs are on the host
    assert "torch" not in packages and not any(name.startswith("nvidia-") for name in packages)


def test_markers_are_evaluated_for_the_host_not_for_this_machine():
    from packaging.requirements import Requirement

    from bench.wheelhouse import target_environment

    old_python = Requirement('tomli; python_version < "3.11"').marker
    assert not old_python.evaluate(target_environment("3.12")) and old_python.evaluate(target_environment("3.10"))
    assert not Requirement('pywin32; sys_platform == "win32"').marker.evaluate(target_environment("3.12"))
    assert Requirement('uvloop; platform_system == "Linux"').marker.evaluate(target_environment("3.12"))
