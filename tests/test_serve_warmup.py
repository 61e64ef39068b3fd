"""bench.serve's warm-up (bench.online.warmup): one batch per shape the batcher can form, each
said as it ends (minutes with a cold compile cache, before /health answers)."""

import torch

from bench.online.warmup import warm_every_shape


class RowBucketedEngine:
    """What the warm-up reads of an engine: a shape per (row bucket, 30 s chunks)."""

    length_matched, device, row_buckets = False, torch.device("cpu"), None

    def __init__(self):
        self.ran, self.warm_after = [], None  # warm_after: batches run when told to compile no more

    def plan(self, batches):
        self.planned = batches

    def batch_shape(self, lengths):
        rows = next(bucket for bucket in self.row_buckets if bucket >= len(lengths))
        return rows, 1 + lengths[0] // (30 * 16_000)

    def transcribe(self, audio, targets, clock):
        assert self.warm_after is None, "a batch of the warm-up ran after it said it was done"
        self.ran.append([len(clip) for clip in audio])

    def warm_shapes_only(self):
        self.warm_after = len(self.ran)


def test_the_warm_up_runs_one_batch_per_shape_and_says_each():
    engine, lines = RowBucketedEngine(), []
    ran = warm_every_shape(engine, 4, 60, 10.0, lines.append)
    # buckets 1, 2, 4 (its first batch, of 3 rows: the engine pads it to 4) at 1 s and at 31 s
    one, long = 16_000, 31 * 16_000
    assert engine.ran == [[one], [one] * 2, [one] * 3, [long], [long] * 2, [long] * 3]
    assert ran == 6 and len(lines) == 7
    assert engine.warm_after == 6  # compiles stop once every shape is made, not before
    assert lines[0].startswith("warming up: 6 batch(es)")
    assert lines[1].startswith("warm-up 1/6: 1 clip(s) of 1 s in ")
    assert lines[6].startswith("warm-up 6/6: 3 clip(s) of 31 s in ")


def test_a_server_for_clips_of_30_s_at_most_warms_only_the_short_shapes():
    engine, lines = RowBucketedEngine(), []
    assert warm_every_shape(engine, 2, 30, 10.0, lines.append) == 2
    assert engine.ran == [[16_000], [16_000] * 2] and lines[-1].startswith("warm-up 2/2: 2 clip(s)")
