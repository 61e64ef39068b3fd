"""Cost per 1,000 audio hours from RTF and an hourly price; board energy per audio hour read
from NVML around every timed batch (a fake NVML on the CPU, the real one on a GPU)."""

import json
import sys
import time
import types

import pandas as pd
import pytest
import torch
from conftest import compose_config
from fake_engine import FakeEngine
from run_folders import make_run

import bench.pipeline.measure
import bench.pipeline.runner
from bench.analysis.report import main as report
from bench.host.energy import (
    CPU_NOTE,
    EnergyCounter,
    counter_check,
    counter_check_line,
    energy_counter,
    nvml_counter,
)
from bench.pipeline.cells import cost_interval, cost_per_audio_hours
from bench.pipeline.record import Summary


def test_cost_arithmetic():
    # RTFx 50: 1/50 machine hour per audio hour; 1,000 audio hours at 3.50 an hour = 20 h x 3.50
    assert cost_per_audio_hours(50.0, 3.5) == pytest.approx(70.0)
    assert cost_per_audio_hours(50.0, None) is None and cost_per_audio_hours(None, 3.5) is None
    # the faster end of RTFx is the cheaper end of cost
    assert cost_interval([40.0, 62.5], 2.0) == pytest.approx([32.0, 50.0])


def test_the_report_prices_each_run_at_the_given_rate(tmp_path, capsys):
    a = make_run(tmp_path / "runs" / "a", engine="voxtral_patched", seconds_per_batch=0.1, noise=0, repeats=3,
                 pass_factors=[1.0, 1.1, 1 / 1.1])  # fmt: skip
    make_run(tmp_path / "runs" / "b", engine="openai_whisper", seconds_per_batch=0.4, noise=0)  # RTFx 25
    out = tmp_path / "out"
    assert report([str(tmp_path / "runs"), "--out", str(out), "--gpu-hourly-price", "4"]) == 0
    table = {row["engine"]: row for _, row in pd.read_csv(out / "comparison.csv").iterrows()}
    assert table["voxtral_patched"]["cost/1k audio h"] == pytest.approx(40.0)  # 4 x 1,000 / 100
    assert table["openai_whisper"]["cost/1k audio h"] == pytest.approx(160.0)
    # three passes 10% apart (RTFx 100, 90.9, 110): the cost interval is 4,000 over the RTFx
    # interval's ends, the faster end the cheaper
    low, high = Summary.read(a).rtfx_ci
    assert low < 95 and high > 105
    assert table["voxtral_patched"]["cost/1k audio h 95% CI"] == f"[{4000 / high:.2f}, {4000 / low:.2f}]"
    assert report([str(tmp_path / "runs"), "--out", str(out)]) == 0  # no price: no cost columns
    assert "cost/1k audio h" not in (out / "comparison.md").read_text()
    assert report([str(tmp_path / "runs"), "--out", str(out), "--gpu-hourly-price", "0"]) == 2
    assert "must be above 0" in capsys.readouterr().err


class FakeNVML(types.ModuleType):
    """pynvml's surface that bench uses: a board drawing a steady WATTS, so its counter (in mJ, as
    NVML's) grows with time, not with reads: what a batch is charged tells where it was read."""

    WATTS = 250.0

    class NVMLError(Exception):
        pass

    def __init__(self, supported=True):
        super().__init__("pynvml")
        self.millijoules, self.supported, self.NVMLError = 0, supported, FakeNVML.NVMLError

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return ("uuid", uuid)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("index", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise self.NVMLError("Not Supported")
        return int(self.WATTS * 1e3 * time.perf_counter())


def test_nvml_counter_reads_joules_or_says_why_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML())
    counter = nvml_counter("GPU-1234")
    assert isinstance(counter, EnergyCounter) and counter.handle == ("uuid", "GPU-1234")
    assert counter.read_j() == pytest.approx(FakeNVML.WATTS * time.perf_counter(), abs=1.0)  # mJ read as J
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(supported=False))
    assert nvml_counter(None, 0) == "not measured: NVML has no energy counter for this GPU (Not Supported)"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert "nvidia-ml-py (NVML) is not installed" in nvml_counter("GPU-1")
    assert energy_counter(torch.device("cpu")) == CPU_NOTE


def _fake_run(monkeypatch, run_dir, *overrides):
    monkeypatch.setattr(bench.pipeline.runner, "engine_class", lambda name: FakeEngine)
    cfg = compose_config("run.limit=4", "run.batch_size=2", "run.progress=false", "model.family=fake",
                         "engine.family=fake", *overrides)  # fmt: skip
    return bench.pipeline.runner.run(cfg, run_dir)


def test_energy_is_read_around_every_timed_batch_with_a_fake_nvml(monkeypatch, run_dir):
    nvml = FakeNVML()
    monkeypatch.setattr(bench.pipeline.measure, "energy_counter", lambda device: EnergyCounter(nvml, "gpu0"))
    summary = _fake_run(monkeypatch, run_dir, "run.repeats=2", "run.gpu_hourly_price=2.5")
    batches = pd.read_parquet(run_dir / "batches.parquet")
    assert len(batches) == 4
    # read just outside each batch's clock: its whole time is charged, and little more (reads moved
    # inside the clock would charge less; around the pass, several batches' worth)
    drawn = FakeNVML.WATTS * batches.processing_s
    assert (batches.energy_j >= drawn).all() and (batches.energy_j <= drawn + FakeNVML.WATTS * 0.02).all()
    # every batch's energy over 2 passes of the same audio
    assert summary.energy_j_per_audio_hour == pytest.approx(batches.energy_j.sum() / (2 * summary.audio_seconds) * 3600)
    assert summary.energy_note is None
    assert summary.cost_per_1000_audio_hours == pytest.approx(2.5 * 1000 / summary.rtfx)
    assert summary.cost_per_1000_audio_hours_ci == pytest.approx(cost_interval(summary.rtfx_ci, 2.5))
    written = json.loads((run_dir / "summary.json").read_text())
    assert written["energy_j_per_audio_hour"] == pytest.approx(summary.energy_j_per_audio_hour)
    assert written["gpu_hourly_price"] == 2.5


def test_a_cpu_run_has_no_energy_and_says_why(monkeypatch, run_dir, tmp_path, capsys):
    summary = _fake_run(monkeypatch, run_dir)
    assert summary.energy_j_per_audio_hour is None and summary.energy_note == CPU_NOTE
    assert summary.cost_per_1000_audio_hours is None  # no price given
    assert report([str(run_dir), "--out", str(tmp_path / "out")]) == 0
    assert f"Energy (J/audio h) {CPU_NOTE}." in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="reading the real NVML counter needs an NVIDIA GPU")
def test_the_real_nvml_counter_advances_on_a_gpu():
    counter = energy_counter(torch.device("cuda"))
    assert isinstance(counter, EnergyCounter), counter
    start = counter.read_j()
    x = torch.randn(8192, 8192, device="cuda")
    for _ in range(50):
        x = x @ x / 8192
    torch.cuda.synchronize()
    assert counter.read_j() > start


class StillNVML(FakeNVML):
    """A board whose counter never moves: every run on it would be charged 0 J."""

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return 1000


def test_a_folder_checks_its_counter_advances_before_trusting_the_runs_energy():
    cpu = torch.device("cpu")
    moving = counter_check(cpu, EnergyCounter(FakeNVML(), "gpu0"), size=64)
    assert moving["advances"] is True and moving["joules"] > 0
    assert counter_check_line(moving).startswith("Energy (J/audio h): the board's NVML counter was checked")
    still = counter_check(cpu, EnergyCounter(StillNVML(), "gpu0"), size=64)
    assert still == {"advances": False, "joules": 0.0}
    assert "did not advance" in counter_check_line(still) and "not to be trusted" in counter_check_line(still)
    none = counter_check(cpu)  # no counter on a CPU: why, in the README, instead of a check
    assert none == {"advances": None, "why": CPU_NOTE}
    assert counter_check_line(none) == f"Energy (J/audio h): {CPU_NOTE}."
    assert counter_check_line(None) is None  # a folder measured before the check says nothing


def test_a_folder_begun_before_the_check_gets_it_on_its_next_call(tmp_path):
    from bench.lab.folder import DEVICE_FILE, device_record

    kept = {"hardware": "NVIDIA H200 x1", "copy_bandwidth_bytes_per_s": 4.2e12}  # as the H200 folder's
    (tmp_path / DEVICE_FILE).write_text(json.dumps(kept))
    record = device_record(tmp_path, torch.device("cpu"))
    assert record == {**kept, "energy_counter": {"advances": None, "why": CPU_NOTE}}  # measured before: kept
    assert json.loads((tmp_path / DEVICE_FILE).read_text()) == record
