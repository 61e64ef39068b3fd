"""The committed reference results: bench's own commands write every table again, byte for
byte, from the committed run folders; the hand-written findings quote only those tables."""

import random
import re
import shutil
from pathlib import Path

import pytest

from bench.analysis import report
from bench.config import REPO_DIR
from bench.lab import speed

REFERENCE = Path("results/reference/h200")
PROFILES = Path("results/profiles/h200")
AGREEMENT = Path("results/agreement/h200")


@pytest.fixture
def results_copy(tmp_path, monkeypatch):
    """A copy of results/ to write into, with the working directory where the commands run from."""
    shutil.copytree(REPO_DIR / "results", tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _assert_same_files(written: Path, committed: Path):
    got, want = _files(written), _files(committed)
    assert sorted(got) == sorted(want)
    for name in want:
        if name.endswith(".png"):  # drawn by matplotlib: the pixels, not its version in the metadata
            import matplotlib.image

            assert (matplotlib.image.imread(written / name) == matplotlib.image.imread(committed / name)).all(), name
        elif name.endswith(".csv"):
            assert _csv_cells(got[name]) == _csv_cells(want[name]), f"{name} differs from the committed file"
        else:
            assert got[name] == want[name], f"{name} differs from the committed file"


def _csv_cells(data: bytes) -> list:
    """A CSV's cells, its numbers to 12 significant digits: the rest of a float's 17 is the
    host's (numpy's vector kernels may sum in another order on another CPU: on one 2-core AMD EPYC
    machine a bootstrap bound of the ladder and one of the reference ratios came out different in
    their last digits). The tables quote 3 digits, and those files still compare byte for byte."""

    def cell(text: str):
        try:
            return float(f"{float(text):.12g}")
        except ValueError:
            return text

    return [[cell(text) for text in line.split(",")] for line in data.decode().splitlines()]


def _emptied(folder: Path, keep) -> None:
    """Remove every generated file of the folder (what the commands must write again)."""
    for path in folder.iterdir():
        if path.is_file() and not keep(path.name):
            path.unlink()


def test_reference_tables_and_readme_are_written_again_byte_for_byte(results_copy):
    inputs = {"device.json", "commands.txt", "findings.md", "gemv_ceiling.txt", "gemv_ceiling.py", "ceilings.json",
              "provenance.json", "published_accuracy.json"}  # fmt: skip
    _emptied(REFERENCE, lambda name: name in inputs)
    assert report.main(["--reference", str(REFERENCE)]) == 0
    _assert_same_files(REFERENCE, REPO_DIR / REFERENCE)


def test_speed_tables_are_written_again_byte_for_byte_in_any_point_order(results_copy):
    written = {"speed.md", "speed.csv", "ablation.md", "ablation.csv", "ablation_phases.md", "ablation_phases.csv"}
    _emptied(REFERENCE, lambda name: name not in written)
    assert speed.main(["--tables-only", "--out", str(REFERENCE)]) == 0
    for name in written:
        assert (REFERENCE / name).read_bytes() == (REPO_DIR / REFERENCE / name).read_bytes(), name
    points = speed.measured_speed_points(REFERENCE)
    random.Random(0).shuffle(points)
    speed.write_tables(REFERENCE, points)
    for name in written:
        assert (REFERENCE / name).read_bytes() == (REPO_DIR / REFERENCE / name).read_bytes(), name


def test_profile_tables_are_written_again_byte_for_byte(results_copy):
    _emptied(PROFILES, lambda name: name == "README.md")
    assert report.main(["--profiles", str(REFERENCE / "runs"), "--out", str(PROFILES)]) == 0
    _assert_same_files(PROFILES, REPO_DIR / PROFILES)


def _is_shallow() -> bool:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO_DIR, capture_output=True, text=True)
    return out.returncode != 0 or out.stdout.strip() != "false"


@pytest.mark.skipif(_is_shallow(), reason="needs bench's whole git history (a full clone) to look the commits up")
def test_the_commit_every_committed_run_names_is_one_of_bench_s_own():
    """A run records the commit it measured (the H200 runs' were corrected by hand, from the
    enclosing repository's c503d06): it must be in bench's own history, and its reference
    folder's README must say that bench measured it."""
    import json
    import subprocess

    readme = (REPO_DIR / REFERENCE / "README.md").read_text()
    summaries = [*(REPO_DIR / "results").rglob("summary.json")]
    commits = {json.loads(path.read_text())["environment"].get("git_commit") for path in summaries} - {None}
    assert commits, "no committed run names a commit"
    for commit in commits:
        found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO_DIR, capture_output=True)
        assert found.returncode == 0, f"{commit} is not a commit of bench"
    from bench.engines._history import measured_version
    from bench.lab.leases import stated_environment

    for path in (REPO_DIR / REFERENCE / "runs").rglob("summary.json"):
        # a run on a tree copied without .git recorded none: its folder's provenance.json states it
        env = stated_environment(REPO_DIR / REFERENCE, path.parent, json.loads(path.read_text())["environment"])
        found = subprocess.run(["git", "cat-file", "-e", f"{env['git_commit']}^{{commit}}"], cwd=REPO_DIR)
        assert found.returncode == 0, f"{env['git_commit']} is not a commit of bench"
        assert measured_version(env) == _source_version(env["git_commit"]), path
        said = f"by bench {measured_version(env)}, at commit {env['git_commit'][:7]}"
        said += " (stated in provenance.json)." if env.get("commit_stated") else "."
        assert said in readme, path


def _source_version(commit: str) -> str:
    import subprocess

    show = ["git", "show", f"{commit}:bench/__init__.py"]
    source = subprocess.run(show, cwd=REPO_DIR, capture_output=True, text=True)
    return re.search(r'__version__ = "([^"]+)"', source.stdout).group(1)


@pytest.mark.skipif(_is_shallow(), reason="needs bench's whole git history (a full clone) to read old sources")
def test_every_committed_run_is_said_to_be_of_the_version_its_commit_s_source_has():
    """A run's provenance is its commit's source, not what an editable install's stale metadata
    recorded (4009608's source is 0.2.0; its runs recorded 0.1.0)."""
    import json

    from bench.engines._history import VERSION_OF_COMMIT, measured_version

    for prefix, version in VERSION_OF_COMMIT.items():
        assert _source_version(prefix) == version, prefix
    for path in (REPO_DIR / "results").rglob("summary.json"):
        summary = json.loads(path.read_text())
        for env in (summary["environment"], summary["environment"].get("client") or {},
                    (summary.get("online") or {}).get("server_environment") or {}):  # fmt: skip
            if env.get("git_commit"):
                assert measured_version(env) == _source_version(env["git_commit"]), path


def test_every_run_of_the_ladder_is_in_its_provenance():
    readme = (REPO_DIR / LADDER / "README.md").read_text()
    counted = sum(int(n) for n in re.findall(r"^- (\d+) run\(s\) by", readme, flags=re.M))
    assert counted == len(list((REPO_DIR / LADDER).rglob("summary.json"))) == 56


def test_a_reference_readme_lists_what_changed_since_its_runs(tmp_path):
    """Runs of an older bench get every later change to their engines and to timing; runs of
    today's bench get none."""
    from run_folders import make_run

    import bench
    from bench.analysis.runs import load_runs
    from bench.lab.reference_folder import provenance_lines

    make_run(tmp_path / "old", engine="voxtral_patched")
    summary = tmp_path / "old" / "summary.json"
    summary.write_text(summary.read_text().replace('"git_commit": "abc"', '"git_commit": "e8cd5de63766"'))
    text = "\n".join(provenance_lines(load_runs([str(tmp_path / "old")])))
    assert "- 1 run(s) by bench 0.1.0, at commit e8cd5de." in text
    assert "voxtral_patched: sync_free_loop, in 0.2.0 (da4b1da): end-of-sequence read back one step late" in text
    assert "openai_whisper" not in text  # an engine the folder did not measure
    make_run(tmp_path / "new", engine="voxtral_patched")
    summary = tmp_path / "new" / "summary.json"
    summary.write_text(summary.read_text().replace('"git_commit": "abc"', f'"bench": "{bench.__version__}"'))
    text = "\n".join(provenance_lines(load_runs([str(tmp_path / "new")])))
    assert f"by bench {bench.__version__}" in text and "has changed since." in text and "sync_free_loop" not in text


NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[+-]\d+)?")


def _numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def test_every_figure_in_the_findings_is_one_the_tables_show():
    readme = (REPO_DIR / REFERENCE / "README.md").read_text()
    findings = (REPO_DIR / REFERENCE / "findings.md").read_text()
    assert findings.strip() in readme  # the README carries the findings as written
    tables = readme.replace(findings.strip(), "")  # the rest was written by bench from the runs
    quoted = "\n".join(line for line in findings.splitlines() if not line.startswith(">"))  # the note's own claim
    # counts small enough to be prose (batch 1, 8 clips, every 8 steps) are not figures
    figures = {n for n in _numbers(quoted) if "." in n or "e" in n or int(n.replace(",", "")) >= 100}
    assert figures, "no figures found: the pattern is broken"
    missing = sorted(figures - _numbers(tables))
    assert not missing, f"figures in findings.md that no table shows: {missing}"


REAL = Path("results/real_weights/cpu")


def test_the_real_weight_report_is_written_again_byte_for_byte(results_copy):
    folder = results_copy / REAL
    _emptied(folder, keep=lambda name: name == "commands.txt")
    assert report.main([str(folder / "run"), "--out", str(folder)]) == 0
    _assert_same_files(folder, REPO_DIR / REAL)


def test_the_docs_quote_the_real_weight_report():
    page = (REPO_DIR / "docs" / "real-weights.md").read_text()
    section = page.split("## Real weights offline")[1].split("\n## ")[0].split("\n### ")[0]  # the ladder: below
    table = "\n".join(line for line in section.splitlines() if line.startswith(("| faster", "| openai", "| whisper")))
    prose = section.split("compares against the references")[0]
    measured = (REPO_DIR / REAL / "comparison.md").read_text()
    measured += (REPO_DIR / "results/real_weights/cpu_recheck/comparison.md").read_text()  # measured again
    figures = _numbers(table) | {n for n in _numbers(prose) if "." in n and n not in ("0.10", "0.35")}
    assert {"28.0", "28.1", "31.5", "21.2", "4.23"} <= figures  # the pattern finds them
    missing = sorted(n for n in figures if n not in _numbers(measured))
    assert not missing, (
        f"figures in docs/real-weights.md's real-weights section that the report does not show: {missing}"
    )


ONLINE = Path("results/online/cpu")


def test_the_load_table_is_written_again_from_its_run_folders_and_quoted_in_the_docs():
    from bench.online.load_folder import load_table

    folders = [REPO_DIR / ONLINE / f"c{level}" for level in (1, 4, 16)]
    committed = (REPO_DIR / ONLINE / "load.md").read_text()
    assert load_table(folders) == committed
    table = committed.split("\n\n", 2)[2].strip()
    page = (REPO_DIR / "docs" / "serving.md").read_text()
    assert table in page
    section = page.split("## Online:")[1].split("\n## ")[0]
    prose = section.split(table)[1]
    figures = {n for n in _numbers(prose) if "." in n}  # measured figures; counts (8 rows, 16 clients) aside
    assert {"16.9", "20.7", "0.656", "10.3", "0.0469", "30.9"} <= figures <= _numbers(table)


def test_the_load_table_shows_uncompiled_decodes_where_a_server_counted_them(tmp_path):
    """Runs of a bench.serve that counts decodes at shapes its warm-up did not make get a column of
    them, n/a for a level whose server did not say; the committed runs, from before it counted
    them, get none (above)."""
    import json

    from bench.online.load_folder import load_table

    folders = []
    for level, uncompiled in ((1, 0), (4, 2), (16, None)):
        folder = tmp_path / f"c{level}"
        shutil.copytree(REPO_DIR / ONLINE / f"c{level}", folder)
        if uncompiled is not None:
            summary = json.loads((folder / "summary.json").read_text())
            summary["online"]["uncompiled_decodes_after_startup"] = uncompiled
            (folder / "summary.json").write_text(json.dumps(summary))
        folders.append(folder)
    server = load_table(folders).split("What the server did")[1]
    assert (
        "| concurrency | batches by size | compiles after start-up | graph captures after start-up | "
        "uncompiled decodes after start-up |" in server
    )
    assert "| 1 | 1: 64 | 0 | 0 | 0 |" in server and "| 4 | 1: 24, 2: 2, 3: 12 | 0 | 0 | 2 |" in server
    assert "| 16 | 1: 13, 2: 1, 4: 1, 5: 1, 8: 5 | 0 | 0 | n/a |" in server


LADDER = Path("results/real_weights/cpu_ladder")


def test_the_ladder_folder_is_written_again_byte_for_byte(results_copy):
    from bench.lab import ladder

    folder = results_copy / LADDER
    _emptied(folder, keep=lambda name: name in ("commands.txt", "findings.md"))
    assert ladder.main(["--out", str(LADDER), "--write"]) == 0  # from the copy, as the folder was written
    _assert_same_files(folder, REPO_DIR / LADDER)


def test_every_figure_in_the_ladder_findings_is_one_its_tables_show():
    readme = (REPO_DIR / LADDER / "README.md").read_text()
    findings = (REPO_DIR / LADDER / "findings.md").read_text()
    assert findings.strip() in readme
    tables = readme.replace(findings.strip(), "")
    figures = {n for n in _numbers(findings) if "." in n}
    assert {"7.18", "0.95", "2.44"} <= figures  # the pattern finds them
    missing = sorted(figures - _numbers(tables))
    assert not missing, f"figures in the ladder's findings.md that no table shows: {missing}"


def test_the_docs_quote_the_ladder():
    page = (REPO_DIR / "docs" / "real-weights.md").read_text()
    section = page.split("### The real-weight ladder")[1].split("\n## ")[0]
    measured = (REPO_DIR / LADDER / "README.md").read_text()
    figures = {n for n in _numbers(section) if "." in n}
    assert {"28.1", "5.96", "8.87", "0.95"} <= figures
    missing = sorted(n for n in figures if n not in _numbers(measured))
    assert not missing, f"figures in the docs' ladder section that the ladder folder does not show: {missing}"


def test_every_figure_in_the_readmes_results_is_one_a_committed_table_shows():
    readme = (REPO_DIR / "README.md").read_text()
    section = readme.split("## Results so far")[1].split("\n## ")[0]
    shown = set()
    for table in (REFERENCE / "README.md", REAL / "comparison.md", Path("results/lease_rehearsal/cpu.txt")):
        shown |= _numbers((REPO_DIR / table).read_text())
    figures = {n for n in _numbers(section) if "." in n}
    assert {"9.86", "0.946", "116", "1.25", "2.05", "7.05", "28.0", "31.5"} <= figures | _numbers(section)
    missing = sorted(figures - shown)
    assert not missing, f"figures in the README's results that no committed table shows: {missing}"


def _rows(text: str, first_header: str) -> list[dict]:
    """The rows of the first Markdown table whose header starts with `first_header`, as dicts."""
    lines = text.split(f"\n| {first_header} |", 1)[1].split("\n\n")[0].splitlines()
    header = [first_header, *(c.strip() for c in lines[0].strip("|").split("|") if c.strip())]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, row, strict=True)) for row in cells]


PUBLISHED = "published_accuracy.json"


def test_each_figure_in_the_readmes_results_is_its_engine_s_at_its_batch():
    """Each figure the README's results quote is read from the committed tables by its engine and
    batch: a figure of another engine or batch size (two RTFx swapped, a batch-1 ratio quoted for
    batch 32) fails, where finding the number anywhere would pass."""
    import json

    section = " ".join((REPO_DIR / "README.md").read_text().split("## Results so far")[1].split("\n## ")[0].split())
    reference = (REPO_DIR / REFERENCE / "README.md").read_text().split("## synthetic\n")[1]
    runs = {(r["engine"], r["batch"]): r for r in _rows(reference, "engine")}
    patched = {r["batch"]: r for r in _rows(reference, "batch")}  # how many times faster voxtral_patched is
    whisper = {r["batch"]: r for r in _rows(reference.split("How many times faster whisper_patched is")[1], "batch")}

    def rtfx(engine, batch):
        return f"{runs[(engine, batch)]['RTFx']} {runs[(engine, batch)]['RTFx 95% CI']}"

    claims = [
        f"| {batch} | {rtfx('whisper_patched', batch)} | {rtfx('voxtral_patched', batch)} | "
        f"{whisper[batch]['whisper_patched vs voxtral_patched']} |"
        for batch in ("1", "32")
    ]
    claims += [
        f"Stock Voxtral ran at {runs[('voxtral_stock', '1')]['RTFx']}x real time",
        f"is {patched['1']['voxtral_patched vs voxtral_stock']} stock at batch 1",
    ]
    rows = json.loads((REPO_DIR / REFERENCE / PUBLISHED).read_text())["rows"]
    published = {r["checkpoint"]: r["WER %"] for r in rows}
    claims.append(
        f"WER is {published['mistralai/Voxtral-Mini-3B-2507']}% for Voxtral-Mini-3B-2507 and "
        f"{published['openai/whisper-large-v3']}% for whisper-large-v3 (published figures, not bench's"
    )
    real = {r["engine"]: r for r in _rows((REPO_DIR / REAL / "comparison.md").read_text(), "engine")}
    for engine in ("faster_whisper", "openai_whisper"):
        r = real[engine]
        claims.append(f"| {engine} | {r['WER']} | {r['S/D/I']} | {r['RTFx']} {r['RTFx 95% CI']} |")
    for claim in claims:
        assert claim in section, claim


NEWCOMER = Path("results/newcomer/cpu.md")


def test_the_times_and_disk_the_readme_and_docs_give_are_the_newcomers():
    """Every "N minutes" and "N GiB" in the README's install, recipes and tests, and the table in
    docs/install.md, is what python -m bench.lab.newcomer measured (results/newcomer/cpu.md)."""
    measured = (REPO_DIR / NEWCOMER).read_text()
    readme = (REPO_DIR / "README.md").read_text()
    setup = readme.split("## Install")[1].split("## Contents")[0]
    quoted = re.findall(r"(\d+(?:\.\d+)?) (?:minutes|GiB)", setup)
    assert {"1.7", "3.27", "2.5", "4.1", "3.76", "14.2"} <= set(quoted)
    assert set(quoted) <= _numbers(measured)
    assert "RTFx 33.3 [14.85, 48.37]" in measured and "RTFx 33.3 [14.85, 48.37]" in setup
    table = measured.split("| step |")[1].split("\n\n")[0]
    assert "| step |" + table in (REPO_DIR / "docs" / "install.md").read_text()


def test_the_capacity_figures_in_the_docs_are_the_measured_ones():
    page = (REPO_DIR / "docs" / "fast-paths.md").read_text()
    section = page.split("### What a step reads")[1].split("\n## ")[0]
    tables = (REPO_DIR / "results" / "capacity" / "cpu" / "README.md").read_text()
    quoted = {n for n in _numbers(section) if "." in n or int(n.replace(",", "")) >= 100}
    assert {"1.34", "2.00", "0.879", "4,391"} <= quoted  # the pattern finds them
    missing = sorted(quoted - _numbers(tables))
    assert not missing, f"figures in docs/fast-paths.md that results/capacity/cpu does not show: {missing}"
