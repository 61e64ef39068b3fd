"""Nothing is compiled or captured while a pass is timed, whatever the batch shapes."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import compose_config

from bench.data.build_sample import write_hub_shard
from bench.engines import engine_class, engine_names
from bench.pipeline.runner import run

ENGINES = list(engine_names())


def _wav(seconds: float, seed: int) -> bytes:
    import io

    buffer = io.BytesIO()
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * 16_000)).astype(np.float32)
    sf.write(buffer, samples, 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def long_then_short(tmp_path_factory):
    """One 40 s clip (two 30 s chunks, a batch of its own: long-form clips are batched apart)
    and seven short ones: at batch 4 the first batch has 1 row and 2 chunks, the next 4 rows
    and 1 chunk, the last 3 rows."""
    folder = tmp_path_factory.mktemp("mixed")
    seconds = [40.0, 3.0, 2.5, 2.0, 3.5, 2.2, 2.8, 3.1]
    rows = {
        "id": [f"clip-{i}" for i in range(len(seconds))],
        "audio": [{"bytes": _wav(s, i), "path": f"clip-{i}.wav"} for i, s in enumerate(seconds)],
        "text": ["a few words said here"] * len(seconds),
    }
    write_hub_shard(rows, folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", ENGINES)
def test_every_batch_shape_is_prepared_before_the_timed_passes(name, long_then_short, tmp_path, monkeypatch):
    captures = []
    engine_type = engine_class(name)
    if hasattr(engine_type, "make_decoder"):  # a fast-decode core: its CUDA-graph path emulated on the CPU
        from cuda_graph_emulation import Emulation

        load = engine_type.load

        def load_with_graphs(engine):
            load(engine)
            captures.append(Emulation(engine, monkeypatch))

        monkeypatch.setattr(engine_type, "load", load_with_graphs)
    # an engine that cannot build random weights runs the packaged real ones (tiny already)
    weights = ["model.weights=random", "model.scale=tiny"] if engine_type.RANDOM_WEIGHTS else ["model=whisper_tiny_en"]
    cfg = compose_config(
        f"engine={name}", *weights, "run.progress=false",
        "dataset=sample", f"dataset.path={long_then_short}", "dataset.name=mixed",
        "run.batch_size=4", "run.repeats=2", "run.warmup_batches=1",
    )  # fmt: skip
    summary = run(cfg, tmp_path)
    batches = pd.read_parquet(tmp_path / "batches.parquet")
    assert summary.compiles_while_timed == 0 and summary.captures_while_timed == 0
    assert (batches.compiles == 0).all() and (batches.captures == 0).all()
    if captures:  # its cold start split: compiles and (emulated) captures, within the warm-up's seconds
        assert summary.compile_seconds > 0 and summary.capture_seconds > 0
        assert summary.compile_seconds + summary.capture_seconds <= summary.warmup_seconds
    if name in ("voxtral_compile", "whisper_compile"):  # one shape for the run: the most rows, the longest clip
        report = summary.engine_report
        assert report["recompiles"] == 0 and report["padded_rows"] == 4 and summary.shape_warmup_batches == 0
    if name == "voxtral_patched":
        assert summary.shape_warmup_batches == 1  # the 4-row batch after the 1-row one, warmed up first
        # a graph per shape and attention window, in warm-up: 1 row x 2 chunks (1,766 slots, a prompt of 758:
        # windows of 1,024 and 1,766) and 4 rows x 1 chunk (891 slots, a prompt of 383: 512 and 891)
        assert captures[0].captures == 4
        assert summary.engine_report["graphs_compiled"] >= 2  # compiled in warm-up, not while timed
    if name == "whisper_patched":  # a long clip's windows one at a time, then short batches of 4 rows
        # a long clip's windows (448 slots: attention windows of 128, 256 and 448), short batches (228: 128, 228)
        assert summary.shape_warmup_batches == 1 and captures[0].captures == 5


# -- the paths that once compiled or captured while timed, each closed -----------------------------
def _clips(n: int, poisoned: int | None = None) -> list:
    from bench.data import Utterance

    return [Utterance(f"u{i}", np.full(16_000, 9.0 if i == poisoned else 0.0, np.float32), "one two three")
            for i in range(n)]  # fmt: skip


def _timed_captures(m) -> list[int]:
    return [b.counts["captures"] for b in m.batches]


def test_no_warm_up_batches_still_warms_every_shape_untimed():
    """run.warmup_batches=0 once skipped the per-shape warm-up too: the first batch of each shape
    captured its graph inside the clock."""
    from fake_engine import ShapeEngine, fake_engine

    from bench.config import RunConfig
    from bench.pipeline.measure import measure

    engine = fake_engine(kind=ShapeEngine)
    m = measure(engine, _clips(7), RunConfig(batch_size=3, warmup_batches=0, repeats=2, progress=False))
    assert engine.captured == 2 and _timed_captures(m) == [0] * 6  # shapes 3 and 1, captured untimed
    assert m.shape_warmups == 2 and not m.cold_start_counted and m.cold_start_s is not None


def test_an_out_of_memory_back_off_warms_the_halves_before_timing_them():
    """The engine forgets every graph after running out of memory; the halves, and every later
    batch, were then captured while timed."""
    from fake_engine import ShapeEngine, fake_engine
    from test_out_of_memory import fits

    from bench.config import RunConfig
    from bench.pipeline.measure import measure

    engine = fits(fake_engine(kind=ShapeEngine), most_rows=2)
    m = measure(engine, _clips(8), RunConfig(batch_size=4, warmup_batches=1, repeats=2, progress=False))
    assert [len(b.ids) for b in m.batches] == [2] * 8 and len(m.oom_splits) == 4
    assert _timed_captures(m) == [0] * 8 and engine.captured > 1  # recaptured after each back-off, untimed


def test_a_clip_dropped_by_on_error_skip_does_not_make_a_new_shape_timed():
    """A clip that fails in the first pass is left out of the later ones: its batch has one row
    less there, a shape no call had run."""
    from fake_engine import ShapeEngine, fake_engine

    from bench.config import RunConfig
    from bench.pipeline.measure import measure

    engine = fake_engine(kind=ShapeEngine, poison=9.0)
    run = RunConfig(batch_size=4, warmup_batches=1, repeats=2, on_error="skip", progress=False)
    m = measure(engine, _clips(4, poisoned=3), run)
    assert [f.id for f in m.failures] == ["u3"]
    assert [len(b.ids) for b in m.batches] == [2, 1, 3]  # the split of the first pass, then 3 rows
    assert _timed_captures(m) == [0, 0, 0] and engine.captured == 3


def test_dynamo_s_recompile_limit_reached_is_counted():
    """Past the limit Dynamo runs a function eager at every new shape and counts no compile: the
    measurement counts the limit being reached instead."""
    import torch
    from fake_engine import ShapeEngine, fake_engine

    from bench.config import RunConfig
    from bench.pipeline.measure import measure

    def rows_squared(x):
        return (x * x).sum()

    compiled = torch.compile(rows_squared, backend="eager", dynamic=False)

    class CompilingEngine(ShapeEngine):
        def transcribe(self, audios, target_tokens, clock):
            compiled(torch.zeros(len(audios)))  # a graph per row count, until the limit
            return super().transcribe(audios, target_tokens, clock)

    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=1):  # (pytest's monkeypatch breaks torch's config on undo)
        engine = fake_engine(kind=CompilingEngine)
        m = measure(engine, _clips(7), RunConfig(batch_size=3, warmup_batches=1, progress=False))
    assert m.recompile_limit_hits == 1  # the second shape (1 row) ran eager
    torch._dynamo.reset()


def test_a_cold_start_is_split_into_compiles_captures_and_the_rest():
    """The warm-up's seconds, and within them torch.compile's compiles (torch's own timing) and the
    engine's captures (what capture_seconds grew by): each counted where it happened, none of
    it while timed."""
    import time

    import torch
    from fake_engine import ShapeEngine, fake_engine

    from bench.config import RunConfig
    from bench.pipeline.measure import measure

    def rows_squared(x):
        return (x * x).sum()

    compiled = torch.compile(rows_squared, backend="eager", dynamic=False)

    class ColdEngine(ShapeEngine):
        """Compiles and "captures" (0.2 s each) at each new row count; the capture's seconds as an
        engine counts them."""

        captured_seconds = 0.0

        def transcribe(self, audios, target_tokens, clock):
            compiled(torch.zeros(len(audios)))
            if len(audios) not in self.graphs:
                time.sleep(0.2)
                self.captured_seconds += 0.2
            return super().transcribe(audios, target_tokens, clock)

        def capture_seconds(self):
            return self.captured_seconds

    from bench.engines.base import compile_seconds

    torch._dynamo.reset()
    engine = fake_engine(kind=ColdEngine)
    before = compile_seconds()
    m = measure(engine, _clips(7), RunConfig(batch_size=3, warmup_batches=1, repeats=2, progress=False))
    assert _timed_captures(m) == [0] * 6  # two shapes (3 rows, 1 row), both in the warm-up
    assert m.capture_s == pytest.approx(0.4)  # both, and nothing of the timed passes
    assert m.compile_s > 0  # two graphs compiled, timed by torch
    assert m.compile_s == pytest.approx(compile_seconds() - before)  # every compile of the run, each once
    assert m.compile_s + m.capture_s <= m.warmup_s  # within the warm-up batches (the first and the 1-row shape's)
    assert m.warmup_s >= m.cold_start_s + 0.2  # the shape's warm-up counted too, not only the first batch
    torch._dynamo.reset()
