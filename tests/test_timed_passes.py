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
    if name in ("voxtral_compile", "whisper_compile"):  # one shape for the run: the most rows, the longest clip
        report = summary.engine_report
        assert report["recompiles"] == 0 and report["padded_rows"] == 4 and summary.shape_warmup_batches == 0
    if name == "voxtral_patched":
        assert summary.shape_warmup_batches == 1  # the 4-row batch after the 1-row one, warmed up first
        assert captures[0].captures == 2  # one graph per shape (1 row x 2 chunks, 4 rows x 1 chunk), in warm-up
        assert summary.engine_report["graphs_compiled"] >= 2  # compiled in warm-up, not while timed
    if name == "whisper_patched":  # a long clip's windows one at a time, then short batches of 4 rows
        assert summary.shape_warmup_batches == 1 and captures[0].captures == 2
