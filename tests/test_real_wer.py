"""A real WER, end to end: real tiny.en weights (no download) through faster_whisper and
through openai-whisper (openai_whisper), measured side by side in one run (batches in
turns) on the shipped sample, then bench.report over that run.

The bounds are docs/real-weights.md's (section "Real weights offline"): both engines measured 28% corpus
WER on this machine (espeak-ng's synthetic voice is far from the speech Whisper learnt
from; tiny.en reads LibriSpeech at about 6%). A WER above 35% means the transcripts or the
scoring broke; one under 10% means the scorer no longer compares against the references.
The two engines' transcripts differ where their log-mel differs (faster-whisper pads it
with zeros after the audio, openai-whisper pads the audio), yet 27 of 30 clips agree
within 10% of their words: at least 24 must."""

import json
import subprocess

import pandas as pd
import pytest
from conftest import bench_command

from bench.analysis.report import main as report

WER_BOUNDS = (0.10, 0.35)
CLOSE_CLIPS = 24  # of 30, within 10% word difference


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real") / "run"
    command = bench_command(
        "engine=faster_whisper",
        "run.paired_with=[openai_whisper]",
        "model=whisper_tiny_en",
        "dataset=sample",
        "run.batch_size=4",
        "run.progress=false",
        "device=cpu",
        f"hydra.run.dir={folder}",
    )
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=1200)
    return folder


@pytest.mark.slow
def test_both_engines_score_real_transcripts_within_the_bounds(paired_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert report([str(paired_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "comparison.csv").set_index("engine")
    assert sorted(table.index) == ["faster_whisper", "openai_whisper"]
    for engine in table.index:
        summary = json.loads(
            ((paired_run / "paired" / engine) if engine != "faster_whisper" else paired_run)
            .joinpath("summary.json")
            .read_text()
        )
        assert summary["weights"] == "pretrained" and summary["n_failed"] == 0
        wer = table.loc[engine, "WER"]
        assert WER_BOUNDS[0] <= wer <= WER_BOUNDS[1], (engine, wer)
        # the S/D/I column is the WER's own counts
        s, d, i = map(int, table.loc[engine, "S/D/I"].split("/"))
        assert (s + d + i) / summary["wer_details"]["reference_words"] == pytest.approx(wer, abs=1e-3)
        assert summary["wer"] == pytest.approx(wer, abs=1e-3)
    assert (out / "wer_vs_rtfx.png").stat().st_size > 10_000  # the Pareto plot, drawn from WERs
    assert "Recommended:" in printed and "WER 2" in printed  # judged on WER, not on speed alone
    assert "speed alone" not in printed
    alike = pd.read_csv(out / "agreement.csv").iloc[0]
    assert alike["clips"] == 30 and alike["within 10%"] >= CLOSE_CLIPS
    assert alike["word difference"] <= 0.10
