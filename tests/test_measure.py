"""RTF arithmetic and the timed region, checked against an engine with known delays."""

import io
import sys
import time

import numpy as np
import pytest
from conftest import compose_config
from fake_engine import FakeEngine, fake_engine

import bench.data.hub
import bench.pipeline.runner
from bench.config import RunConfig
from bench.data import Utterance
from bench.errors import BenchError
from bench.pipeline.measure import measure


def utterances(seconds: list[float]) -> list[Utterance]:
    return [
        Utterance(f"u{i}", np.zeros(int(s * 16_000), dtype=np.float32), "one two three") for i, s in enumerate(seconds)
    ]


def test_rtf_sum_over_sum_with_known_delays(run_dir):
    engine = fake_engine(batch_delay=0.05, cold_delay=0.3)
    m = measure(engine, utterances([2.0] * 8), RunConfig(batch_size=2, warmup_batches=1, progress=False))
    assert len(m.batches) == 4  # warm-up batch not among them
    for b in m.batches:
        assert b.audio_s == pytest.approx(4.0)
        assert 0.05 <= b.processing_s < 0.08
    assert 0.3 <= m.cold_start_s < 0.35  # the cold call is reported on its own
    assert 0.1 <= m.load_s < 0.15
    total = sum(b.processing_s for b in m.batches)
    assert 0.2 <= total < 0.3  # 4 x 0.05 s; the 0.3 s cold call is excluded


def test_without_warmup_the_cold_call_is_counted_and_flagged():
    m = measure(fake_engine(), utterances([1.0] * 4), RunConfig(batch_size=2, warmup_batches=0, progress=False))
    assert m.cold_start_counted and len(m.batches) == 2
    assert m.batches[0].processing_s >= 0.3 and m.cold_start_s == m.batches[0].processing_s


def test_repeats_keep_every_raw_value():
    m = measure(fake_engine(), utterances([1.0] * 3), RunConfig(batch_size=1, repeats=3, progress=False))
    assert [(b.repeat, b.index) for b in m.batches] == [(r, i) for r in range(3) for i in range(3)]
    assert set(m.transcripts) == {"u0", "u1", "u2"}


def test_length_matched_mode_passes_reference_token_counts():
    m = measure(fake_engine(weights="random"), utterances([1.0, 1.0]), RunConfig(progress=False))
    assert m.target_tokens == {"u0": 3, "u1": 3}
    assert all(t.n_tokens == 3 for t in m.transcripts.values())


def test_summary_figures_and_timed_region_excludes_audio_decoding(monkeypatch, run_dir):
    real_decode = bench.data.hub.decode_audio

    def slow_decode(*args, **kwargs):
        time.sleep(0.2)  # decoding is slow, but happens before the timed region
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(bench.data.hub, "decode_audio", slow_decode)
    monkeypatch.setattr(bench.pipeline.runner, "engine_class", lambda name: FakeEngine)
    cfg = compose_config(
        "run.limit=4", "run.batch_size=2", "run.progress=false", "model.family=fake", "engine.family=fake"
    )
    summary = bench.pipeline.runner.run(cfg, run_dir)
    # 2 timed batches of 0.05 s each; 4 x 0.2 s of decoding would show up if it were timed
    assert 0.1 <= summary.processing_seconds < 0.16
    assert summary.rtfx == pytest.approx(summary.audio_seconds / summary.processing_seconds)
    assert summary.rtf == pytest.approx(1 / summary.rtfx)
    assert summary.n_utterances == 4 and summary.n_failed == 0
    # the fake always answers "fake words here": every reference word is wrong or missing
    assert summary.wer == pytest.approx(
        (summary.wer_details["substitutions"] + summary.wer_details["deletions"] + summary.wer_details["insertions"])
        / summary.wer_details["reference_words"]
    )
    assert summary.wer > 0.5


def _engine_failing_on(bad_seconds: float):
    engine = fake_engine()
    ok = engine.transcribe

    def transcribe(audios, target_tokens, clock):
        if any(len(audio) == int(16_000 * bad_seconds) for audio in audios):
            raise RuntimeError("bad clip")
        return ok(audios, target_tokens, clock)

    engine.transcribe = transcribe
    return engine


def test_a_failing_batch_is_split_until_the_failing_utterance_is_alone():
    run = RunConfig(on_error="skip", warmup_batches=0, progress=False, batch_size=3)
    m = measure(_engine_failing_on(3.0), utterances([1.0, 3.0, 1.0]), run)
    assert [f.id for f in m.failures] == ["u1"] and "bad clip" in m.failures[0].reason
    assert set(m.transcripts) == {"u0", "u2"}


def test_on_error_fail_stops_the_run():
    run = RunConfig(on_error="fail", warmup_batches=0, progress=False)
    with pytest.raises(
        BenchError, match=r"fake failed on batch 0 of repeat 0 \(utterances u0\): RuntimeError: bad clip"
    ):
        measure(_engine_failing_on(3.0), utterances([3.0]), run)


def test_a_run_releases_its_model_before_the_next_job_starts(monkeypatch, run_dir):
    """Multirun jobs share a process: nothing of a finished job may keep device memory alive."""
    import weakref

    import torch

    held = []

    class HoldingEngine(FakeEngine):
        def load(self):
            self.model = torch.nn.Linear(256, 256)
            held.append(weakref.ref(self.model))

    monkeypatch.setattr(bench.pipeline.runner, "engine_class", lambda name: HoldingEngine)
    cfg = compose_config("run.limit=1", "run.progress=false", "model.family=fake", "engine.family=fake")
    bench.pipeline.runner.run(cfg, run_dir)
    assert len(held) == 1 and held[0]() is None


def test_side_by_side_engines_take_turns_batch_by_batch():
    from bench.pipeline.measure import measure_side_by_side

    calls = []
    a, b = fake_engine(batch_delay=0.01), fake_engine(batch_delay=0.03)
    for name, engine in (("a", a), ("b", b)):
        original = engine.transcribe

        def transcribe(audios, targets, clock, original=original, name=name):
            calls.append(name)
            return original(audios, targets, clock)

        engine.transcribe = transcribe
    ma, mb = measure_side_by_side([a, b], utterances([1.0] * 4), RunConfig(batch_size=2, progress=False))
    # warm-up a, b; then batch 0: a first, batch 1: b first (who starts rotates)
    assert calls == ["a", "b", "a", "b", "b", "a"]
    assert len(ma.batches) == len(mb.batches) == 2
    ratio = sum(x.processing_s for x in mb.batches) / sum(x.processing_s for x in ma.batches)
    assert 2.0 < ratio < 3.5  # 0.03 s vs 0.01 s per batch


class Allocating(FakeEngine):
    """Holds `megabytes` of touched memory while it transcribes, then lets it go."""

    megabytes = 0

    def transcribe(self, audios, target_tokens, clock):
        held = np.ones(self.megabytes * 2**20, dtype=np.uint8)
        try:
            return super().transcribe(audios, target_tokens, clock)
        finally:
            del held


def test_a_cpu_run_alone_records_its_process_peak_and_a_paired_one_none():
    import resource

    from bench.pipeline.measure import measure_side_by_side

    def resident_now() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # enough that the process's peak must rise by 256 MiB, whatever earlier tests held
    megabytes = (max(0, peak_before - resident_now()) >> 20) + 256
    run = RunConfig(batch_size=2, warmup_batches=0, repeats=1, progress=False)
    alone = measure(fake_engine(kind=Allocating, megabytes=megabytes), utterances([1.0, 1.0]), run)
    assert alone.peak_resident_bytes >= peak_before + 200 * 2**20  # freed by the end: only a peak shows it
    paired = measure_side_by_side([fake_engine(), fake_engine()], utterances([1.0, 1.0]), run)
    assert [m.peak_resident_bytes for m in paired] == [None, None]


class Terminal(io.StringIO):
    """stderr as a terminal has it: tqdm draws its bars there."""

    def isatty(self) -> bool:
        return True


def test_the_progress_shows_the_warm_up_apart_from_the_timed_batches(monkeypatch):
    """Two warm-up batches, then 3 passes over 2 batches: a bar of 2, then a bar of 6 (one bar
    of 8 counted the slow warm-up with the timed batches and misjudged the time left)."""
    monkeypatch.setattr(sys, "stderr", terminal := Terminal())
    measure(fake_engine(), utterances([1.0] * 4), RunConfig(batch_size=2, warmup_batches=2, repeats=3, progress=True))
    bars = terminal.getvalue().replace("\r", "\n")
    assert "fake warm-up (untimed: compiles, captures): 100%" in bars and " 2/2 " in bars
    assert "fake timed: 100%" in bars and " 6/6 " in bars
    assert "/8 " not in bars


def test_no_progress_bar_floods_a_log_redirected_to_a_file(monkeypatch):
    monkeypatch.setattr(sys, "stderr", log := io.StringIO())  # not a terminal
    measure(fake_engine(), utterances([1.0] * 4), RunConfig(batch_size=2, repeats=3, progress=True))
    assert "timed" not in log.getvalue() and "%" not in log.getvalue()


class CompilingEngine(FakeEngine):
    """An engine whose every call compiles a graph and captures one, as one whose compile escaped
    its warm-up would: both must be counted on the batch that did it."""

    batch_delay = cold_delay = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.captured = 0

    def graph_captures(self):
        return self.captured

    def transcribe(self, audios, target_tokens, clock):
        import torch

        scope = {}
        exec(f"def step_{self.calls}(x):\n    return x * {self.calls} + 1", scope)  # a new function: a new graph
        torch.compile(scope[f"step_{self.calls}"], backend="eager")(torch.ones(3))
        self.captured += 1
        return super().transcribe(audios, target_tokens, clock)


def test_a_compile_and_a_capture_inside_a_timed_call_are_counted_on_its_batch():
    m = measure(fake_engine(kind=CompilingEngine), utterances([1.0] * 4),
                RunConfig(batch_size=2, warmup_batches=1, repeats=2, progress=False))  # fmt: skip
    assert [(b.counts["compiles"], b.counts["captures"]) for b in m.batches] == [(1, 1)] * 4
