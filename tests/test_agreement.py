"""python -m bench.agreement: the patched engine against stock, logits and tokens."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import compose_config, tiny_engine

from bench.config import REPO_DIR
from bench.data import load_utterances
from bench.engines.voxtral_patched import PATCHES
from bench.lab.agreement import compare, headline, token_agreement


def test_token_agreement_by_hand():
    assert token_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == (0.75, 2)
    assert token_agreement([1, 2, 3], [1, 2, 3, 4, 5]) == (0.6, 3)  # the longer sequence counts
    assert token_agreement([], []) == (1.0, 0)


@pytest.fixture(scope="module")
def clips():
    return load_utterances(compose_config("dataset=sample").dataset, limit=6, progress=False)


def test_in_float32_the_patched_engine_agrees_exactly(clips):
    frame = compare(tiny_engine("voxtral_stock"), tiny_engine("voxtral_patched"), clips, 2)
    assert len(frame) == 6 and frame.identical.all() and frame.first_token_equal.all()
    assert (frame.token_agreement == 1.0).all() and (frame.first_difference == frame.stock_tokens).all()
    assert frame.logits_rel_error.max() < 1e-5
    assert headline(frame)["token agreement (all positions)"] == 1.0
    assert headline(frame)["first difference, median of differing clips (tokens)"] == "none"


def test_the_headline_places_the_first_difference_among_differing_clips_only():
    frame = pd.DataFrame(
        {
            "logits_rel_error": [0.0, 0.0, 0.01, 0.02],
            "first_token_equal": True,
            "stock_tokens": [10, 40, 12, 12],
            "patched_tokens": [10, 40, 12, 14],
            # two identical clips (first "difference" = their length), two differing at tokens 3 and 7
            "first_difference": [10, 40, 3, 7],
            "token_agreement": [1.0, 1.0, 0.5, 0.5],
            "identical": [True, True, False, False],
        }
    )
    figures = headline(frame)
    assert figures["first difference, median of differing clips (tokens)"] == 5.0
    assert figures["identical transcripts"] == "2/4"
    # positions weighted by the longer side: (10 + 40 + 0.5 x 12 + 0.5 x 14) / (10 + 40 + 12 + 14)
    assert abs(figures["token agreement (all positions)"] - 63 / 76) < 1e-12


def test_a_perturbed_model_shows_in_the_logits_error(clips):
    # packed_linears off: the head keeps its dense weight to perturb (packed, oneDNN holds a reordered copy)
    dense = ",".join(p for p in PATCHES if p != "packed_linears")
    patched = tiny_engine("voxtral_patched", f"engine.patches=[{dense}]")
    weight = patched.model.lm_head.weight
    weight.data += 0.01 * weight.data.std()  # what a lossy kernel would do, in excess
    frame = compare(tiny_engine("voxtral_stock"), patched, clips[:2], 1)
    assert (frame.logits_rel_error > 1e-3).all()


@pytest.mark.slow
def test_the_command_prints_the_headline_and_writes_the_tables(tmp_path, offline_env):
    args = ["--scale", "tiny", "--dtype", "float32", "--device", "cpu", "--limit", "3", "--out", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", "bench.agreement", *args], capture_output=True, text=True, env=offline_env, cwd=REPO_DIR
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "# voxtral_patched vs voxtral_stock" in out.stdout and "identical transcripts" in out.stdout
    frame = pd.read_csv(tmp_path / "agreement.csv")
    assert len(frame) == 3 and frame.identical.all()
