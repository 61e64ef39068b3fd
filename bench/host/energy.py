"""The GPU board's energy counter, read around every timed batch.

NVIDIA GPUs since Volta count the energy their board has drawn since the driver loaded
(NVML's total energy consumption, in millijoules). Read just before a batch's clock starts
and just after it stops, the difference is that batch's energy: the whole board's, idle
draw included, which is what a deployment pays for. The reads sit outside the timed
interval, so they cost the measurement nothing. Elsewhere (a CPU run, an older GPU, no
NVML library) there is no counter, and the run records why instead of a figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CPU_NOTE = "not measured: the run is on the CPU; bench reads energy from an NVIDIA GPU's board counter (NVML)"


@dataclass
class EnergyCounter:
    """One GPU's counter; read_j() is the joules it has counted so far."""

    nvml: object  # the pynvml module (a fake one in tests)
    handle: object

    def read_j(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3


def energy_counter(device: torch.device) -> EnergyCounter | str:
    """The counter of the GPU a run measures on, or the reason there is none."""
    if device.type != "cuda":
        return CPU_NOTE
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return nvml_counter(f"GPU-{uuid}" if uuid is not None else None, index)


def nvml_counter(uuid: str | None, index: int = 0) -> EnergyCounter | str:
    """NVML's counter for the GPU of that UUID (what torch and NVML agree on whatever
    CUDA_VISIBLE_DEVICES renumbers), by index where torch gives no UUID."""
    try:
        import pynvml
    except ImportError:
        return "not measured: nvidia-ml-py (NVML) is not installed; pip install nvidia-ml-py"
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else pynvml.nvmlDeviceGetHandleByIndex(index)
        counter = EnergyCounter(pynvml, handle)
        counter.read_j()  # older boards (before Volta) answer Not Supported here
    except pynvml.NVMLError as err:
        return f"not measured: NVML has no energy counter for this GPU ({err})"
    return counter


def counter_check(device: torch.device, counter: EnergyCounter | str | None = None, size: int = 4096) -> dict:
    """Whether the board's counter advances while the device works (a counter that stood still
    would give every run 0 J): read before and after a burst of 50 products of size x size
    matrices (a fraction of a second on a GPU). {"advances": None, "why": ...} where there is
    no counter (counter: the device's own unless given)."""
    counter = energy_counter(device) if counter is None else counter
    if not isinstance(counter, EnergyCounter):
        return {"advances": None, "why": counter}
    start = counter.read_j()
    x = torch.randn(size, size, device=device)
    for _ in range(50):
        x = x @ x / size
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    joules = counter.read_j() - start
    return {"advances": joules > 0, "joules": round(joules, 1)}


def counter_check_line(check: dict | None) -> str | None:
    """A README's sentence on a folder's device.json check (None: the folder has none)."""
    if check is None:
        return None
    if check["advances"] is None:
        return f"Energy (J/audio h): {check['why']}."
    if check["advances"]:
        return (f"Energy (J/audio h): the board's NVML counter was checked on this device before the runs: "
                f"it advanced {check['joules']:g} J over a burst of matrix products.")  # fmt: skip
    return ("Energy (J/audio h): the board's NVML counter did not advance over a burst of matrix products on "
            "this device, so the runs' energy figures are not to be trusted.")  # fmt: skip


def joules_per_audio_hour(energy_j: float, audio_s: float) -> float:
    return energy_j / audio_s * 3600
