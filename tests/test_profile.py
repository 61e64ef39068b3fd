"""profile=true on the CPU at tiny scale: phases, counts, and the merge hypothesis as a test."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import bench_command, tiny_engine

from bench.config import REPO_DIR
from bench.pipeline.profile import profile_batch
from bench.pipeline.trace import phase_table

CPU = torch.device("cpu")


def clip(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(int(16_000 * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def engines():
    return {
        "voxtral_stock": tiny_engine("voxtral_stock"),
        "voxtral_patched": tiny_engine("voxtral_patched", "engine.max_chunks=4"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voxtral_stock", "voxtral_patched"])
def test_merge_kernels_do_not_grow_with_audio_tokens(engines, name):
    """The "375 individual kernels" claim: 1, 2 and 4 chunks (375 to 1500 placeholders) launch the same count."""
    engine = engines[name]
    counts = []
    for seconds in (10, 50, 110):  # 1, 2 and 4 chunks of 30 s
        result, _ = profile_batch(engine, [clip(seconds)], [3])
        counts.append(result.summary["merge_kernels"])
    assert counts[0] > 0 and counts == [counts[0]] * 3


def test_patched_makes_fewer_host_syncs_per_decode_step_than_stock(engines):
    per_step = {}
    for name, engine in engines.items():
        engine.transcribe([clip(5), clip(8)], [40, 40], _warm_clock())  # warm at the profiled shape
        result, _ = profile_batch(engine, [clip(5), clip(8)], [40, 40])
        assert result.summary["decode_steps"] >= 39
        per_step[name] = result.summary["decode_host_syncs_per_step"]
    assert per_step["voxtral_stock"] >= 1  # generate reads "all finished?" back every step
    assert per_step["voxtral_patched"] == 0  # end-of-sequence read from host memory, no tensor read
    assert per_step["voxtral_patched"] < per_step["voxtral_stock"]


def _warm_clock():
    from bench.pipeline.clock import Clock

    return Clock(CPU).__enter__()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["voxtral_stock", "voxtral_patched", "voxtral_compile", "openai_whisper"])
def test_profile_mode_writes_trace_table_and_verdict(engine, tmp_path, offline_env):
    args = [f"engine={engine}", "model.weights=random", "model.scale=tiny", "run.progress=false", "run.limit=2",
            "run.batch_size=2", "profile=true", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(
        bench_command(*args), capture_output=True, text=True, env=offline_env, cwd=REPO_DIR, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "# Profile of one warm batch" in out.stdout
    assert "USDT:" not in out.stderr and "profiler_start" not in out.stderr  # Kineto's lines, dropped
    phases = pd.read_parquet(tmp_path / "profile_phases.parquet")
    expected = {"h2d", "features", "decode"} if engine != "voxtral_compile" else {"h2d", "features", "generate"}
    assert expected <= set(phases.phase)
    assert (phases.kernels > 0).all() and (phases.wall_ms > 0).all()
    trace = json.loads((tmp_path / "profile_trace.json").read_text())
    assert any(e.get("name", "").startswith("phase:") for e in trace["traceEvents"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["profile"]["decode_steps"] > 0


def test_kineto_lines_are_dropped_and_other_stderr_kept(capfd):
    import os

    from bench.pipeline.profile import _without_kineto_lines

    with _without_kineto_lines():
        os.write(2, b"USDT:2026-11-30 23:48:19 15676:15676 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a real warning from C++\n")
        os.write(2, b"STAGE:2026-11-30 23:48:28 15723:15723 SyncActivityProfilerHandler.cpp:51] Completed Stage\n")
        print("and one from Python", file=sys.stderr)
    # (under pytest, Python's own stderr bypasses file descriptor 2: the order is not the point)
    assert sorted(capfd.readouterr().err.splitlines()) == ["a real warning from C++", "and one from Python"]


# -- the CUDA branch of the phase table, on a hand-made trace ----------------------------------
class Event:
    """The parts of torch.autograd.profiler_util.FunctionEvent the phase table reads."""

    def __init__(
        self, name, start, end, *, device=torch.autograd.DeviceType.CPU, id=0, kernels=(), parent=None, note=False
    ):
        self.name, self.device_type, self.id, self.is_user_annotation = name, device, id, note
        self.time_range = SimpleNamespace(start=start, end=end)  # microseconds, as torch gives them
        self.kernels = [SimpleNamespace(duration=d) for d in kernels]
        self.cpu_parent, self.cpu_children = parent, []
        if parent is not None:
            parent.cpu_children.append(self)


def kernel(correlation, start, end):
    return Event("a kernel", start, end, device=torch.autograd.DeviceType.CUDA, id=correlation)


def cuda_trace():
    """A prefill with one operator's kernel, then two decode steps: a scalar read (a copy and
    a sync inside it), a CUDA graph replay of two kernels, and an explicit synchronize."""
    mm = Event("aten::mm", 100, 200, id=1, kernels=[300])  # torch links the kernel to its operator
    read = Event("aten::_local_scalar_dense", 1100, 1300, id=2, kernels=[10])
    return [
        Event("phase:prefill", 0, 1000),
        mm,
        Event("cudaLaunchKernel", 150, 160, id=11, parent=mm),
        kernel(11, 200, 500),  # 300 us, the same kernel as the operator's
        Event("phase:decode", 1000, 3000),
        read,
        Event("cudaMemcpyAsync", 1110, 1120, id=12, parent=read),
        Event("cudaStreamSynchronize", 1120, 1290, id=13, parent=read),  # part of the read: not a second sync
        Event("Memcpy DtoH (Device -> Pinned)", 1150, 1160, device=torch.autograd.DeviceType.CUDA, id=12),  # 10 us
        Event("cudaGraphLaunch", 1400, 1420, id=14),  # no operator around a replay: linked only by id
        kernel(14, 1420, 1900),
        kernel(14, 1900, 2300),
        Event("cudaStreamSynchronize", 2500, 2600, id=15),
        # On CUDA each record_function range has a GPU-side twin of the same name over the work
        # it enclosed, and its id is not a launch's: here they collide with launches of the other
        # phase, as the H200 trace's did (its encode row took decode's whole device span).
        Event("phase:prefill", 200, 500, device=torch.autograd.DeviceType.CUDA, id=12, note=True),
        Event("phase:decode", 1150, 2300, device=torch.autograd.DeviceType.CUDA, id=11, note=True),
    ]


def test_phase_table_on_a_cuda_trace():
    frame = phase_table(cuda_trace(), cuda=True, decode_steps=2).set_index("phase")
    prefill, decode, step = frame.loc["prefill"], frame.loc["decode"], frame.loc["decode, per step"]
    assert (prefill.wall_ms, prefill.kernels, prefill.host_syncs, prefill.copies) == (1.0, 1, 0, 0)
    assert prefill.device_ms == pytest.approx(0.3)  # counted once, by either link
    assert prefill.idle_share == pytest.approx(0.7)
    assert (decode.wall_ms, decode.kernels, decode.host_syncs, decode.copies) == (2.0, 1, 2, 1)
    assert decode.device_ms == pytest.approx(0.01 + 0.48 + 0.40)  # the graph's kernels included
    assert decode.idle_share == pytest.approx(1 - 0.89 / 2.0)
    assert (step.wall_ms, step.kernels, step.host_syncs) == (1.0, 0.5, 1.0)
    assert step.device_ms == pytest.approx(0.445)
    # the kernels the GPU ran: the replay's two (one launch), not the copy
    assert (prefill.device_kernels, decode.device_kernels, step.device_kernels) == (1, 2, 1.0)


def test_the_decode_phase_kernels_per_step_on_a_cuda_trace():
    from bench.pipeline.trace import decode_kernels

    events = [*cuda_trace(), Event("cudaGraphLaunch", 2400, 2410, id=19), kernel(19, 2410, 2420)]
    events[-1].name = "a cheaper kernel"
    table = decode_kernels(events, steps=2)
    assert list(table.kernel) == ["a kernel", "a cheaper kernel"]  # the costliest first; the copy is no kernel
    assert list(table["per step"]) == [1.0, 0.5]
    assert table["device µs per step"].tolist() == pytest.approx([(480 + 400) / 2, 10 / 2])


def _assert_invariants(frame, batch_device_ms, batch_wall_ms):
    phases = frame[frame.phase != "decode, per step"]
    assert phases.device_ms.sum() == pytest.approx(batch_device_ms)  # every bit of device work, once
    assert (phases.device_ms <= batch_device_ms + 1e-9).all()
    assert phases.wall_ms.sum() <= batch_wall_ms + 1e-9  # phases do not overlap, nor count twice
    shares = frame.idle_share.dropna()
    assert ((shares >= 0) & (shares <= 1)).all()


def test_phase_table_invariants_on_a_cuda_trace():
    from bench.pipeline.trace import batch_device_ms

    events = cuda_trace()
    assert batch_device_ms(events) == pytest.approx(0.3 + 0.01 + 0.48 + 0.40)
    _assert_invariants(phase_table(events, cuda=True, decode_steps=2), batch_device_ms(events), 3.0)


def test_work_launched_outside_every_phase_has_its_own_row():
    events = [*cuda_trace(), Event("cudaLaunchKernel", 3100, 3110, id=16), kernel(16, 3110, 3210)]
    frame = phase_table(events, cuda=True, decode_steps=2).set_index("phase")
    assert frame.loc["(outside phases)", "device_ms"] == pytest.approx(0.1)
    assert frame.device_ms.drop("decode, per step").sum() == pytest.approx(1.29)


def test_phase_table_invariants_on_a_cpu_trace(engines):
    result, _ = profile_batch(engines["voxtral_patched"], [clip(3), clip(4)], [5, 5])
    frame = result.phases
    assert (frame.device_ms == 0).all()
    _assert_invariants(frame, 0.0, result.summary["batch_wall_ms"])


def test_a_lagged_end_of_sequence_wait_is_not_counted_as_a_host_sync():
    """The lagged read's wait (an event two steps back, the next step queued behind it) is told
    apart from a stall by the range it runs in; the same call outside that range is a host sync."""
    from bench.engines._fast.end_of_sequence import LAGGED_WAIT

    events = [
        *cuda_trace(),
        Event(LAGGED_WAIT, 2700, 2800),
        Event("cudaEventSynchronize", 2710, 2790, id=17),
        Event("cudaEventSynchronize", 2850, 2900, id=18),  # no range around it: a stall
    ]
    frame = phase_table(events, cuda=True, decode_steps=2).set_index("phase")
    assert frame.loc["decode", "lagged_waits"] == 1 and frame.loc["decode", "host_syncs"] == 3
    assert frame.loc["decode, per step", "lagged_waits"] == 0.5


class CudaLikeEvent:
    """torch.cuda.Event's surface: record, query (done yet?) and synchronize (wait until done);
    `done` says whether the GPU has reached it, `waits` when the host waited on it."""

    def __init__(self, log):
        self.log, self.done, self.recorded = log, False, 0

    def record(self):
        self.recorded += 1
        self.done = False

    def query(self):
        return self.done

    def synchronize(self):
        self.log.append(("wait", self, inside[0]))
        self.done = True


inside = [False]  # whether the host is inside the lagged wait's profiler range


def test_the_lagged_read_waits_only_on_an_earlier_step_and_only_when_it_is_not_done(monkeypatch):
    from contextlib import contextmanager

    import bench.engines._fast.end_of_sequence as eos

    @contextmanager
    def marked(name):
        assert name == eos.LAGGED_WAIT
        inside[0] = True
        yield
        inside[0] = False

    monkeypatch.setattr(eos, "record_function", marked)
    log = []
    flag = eos.FinishedFlag(torch.device("cpu"))
    flag.cuda, flag.events = True, [CudaLikeEvent(log), CudaLikeEvent(log)]
    unfinished = torch.tensor([True, False])
    flag.copy(unfinished)  # after the prefill
    assert flag.all_done_before_this_step() is False and log == []  # nothing to read yet
    for step in range(1, 5):
        flag.copy(unfinished)
        latest = flag.events[(flag.count - 1) % 2]
        earlier = flag.events[(flag.count - 2) % 2]
        earlier.done = step % 2 == 0  # the GPU has reached the earlier step on even steps only
        log.clear()
        assert flag.all_done_before_this_step() is False
        # never the step just queued; the earlier one only when not done, and inside the range
        assert log == ([] if step % 2 == 0 else [("wait", earlier, True)]) and latest.done is False
    flag.copy(torch.tensor([False, False]))  # every row finished at this step
    flag.copy(torch.tensor([False, False]))  # one step more: now that read is two copies back
    assert flag.all_done_before_this_step() is True


def test_the_invariants_are_checked_on_the_trace_itself():
    from bench.pipeline.profile import invariants_lines
    from bench.pipeline.trace import batch_device_ms, invariant_violations

    events = cuda_trace()
    frame = phase_table(events, cuda=True, decode_steps=2)
    device = batch_device_ms(events)
    assert invariant_violations(frame, device, 3.0) == []
    assert invariants_lines({"invariants_broken": [], "batch_device_ms": device}) == [
        "- The phase table's invariants hold on this trace: its phases lie within the batch; "
        "their device time adds up to the batch's, once."
    ]
    # the defect of the first H200 profiles: each phase counted twice, device time charged to the wrong phase
    doubled = frame.assign(wall_ms=2 * frame.wall_ms)
    wall = doubled[doubled.phase != "decode, per step"].wall_ms.sum()
    assert invariant_violations(doubled, device, 3.0) == [
        f"the phases' wall time ({wall:.1f} ms) exceeds the batch's (3.0 ms)"
    ]
    first = frame.phase.iloc[0]  # 0.5 ms of device work charged to the first phase as well
    twice = frame.assign(device_ms=frame.device_ms.where(frame.phase != first, frame.device_ms + 0.5))
    assert invariant_violations(twice, device, 3.0) == [
        f"the phases' device time ({device + 0.5:.1f} ms) is not the batch's ({device:.1f} ms)"
    ]
    broken = invariants_lines({"invariants_broken": ["x"], "batch_device_ms": device})
    assert broken == ["- The phase table breaks its invariants on this trace: x. Its times are not true."]
    assert invariants_lines({"batch_device_ms": device}) == []  # a profile taken before the check
