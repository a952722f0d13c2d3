"""System metrics of a trial's run: MLflow's monitor (CPU, memory, disk, network; GPU
utilisation and memory through nvidia-ml-py when it is installed and CUDA is used) and
the trial's own peak memory.

MLflow's monitor measures the whole machine, not the trial: two trials sharing a node show
the same CPU curve. What belongs to the trial alone is `trial_peak_rss_mb` (the peak
resident memory of its worker process since the trial started; Linux resets the peak on
request) and, on CUDA, `trial_peak_cuda_mb` (torch's peak allocated memory on its device).
"""

from __future__ import annotations

import logging
import resource
import sys
from pathlib import Path

from sweep.compat.mlflow_system import trial_monitor

log = logging.getLogger("nrfer.sweep")
_CURRENT: dict = {}  # the monitor of the trial this worker process runs now


def start_monitor(run_id: str, uri: str, interval_s: float, resumed: bool):
    """Start MLflow's system-metrics monitor on `run_id` (stopping the one a previous trial
    left in this reused worker; `sweep.compat.mlflow_system` says how it differs from
    MLflow's own). Returns it, or None when it cannot run here."""
    stop_monitor()
    try:
        monitor = trial_monitor(run_id, uri, interval_s, resumed)
    except ImportError as e:  # psutil missing
        log.warning("no system metrics: %s", e)
        return None
    except Exception as e:  # system metrics never stop a trial (a CompatError names its shim)
        log.warning("no system metrics for run %s: %s", run_id, e)
        return None
    _CURRENT["monitor"] = monitor
    return monitor


def stop_monitor() -> None:
    monitor = _CURRENT.pop("monitor", None)
    if monitor is not None:
        try:
            monitor.finish()
        except Exception as e:
            log.warning("stopping the system-metrics monitor: %s", e)


class PeakMemory:
    """The trial's own peak memory: resident set of this process and torch's CUDA peak."""

    STATUS = Path("/proc/self/status")

    def __init__(self, device) -> None:
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.device = device
        self.reset()

    def reset(self) -> None:
        try:  # Linux: "5" resets the peak RSS (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # elsewhere: the process's peak since it started
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, float]:
        out = {"trial_peak_rss_mb": self._peak_rss_kb() / 1024}
        if self.cuda:
            import torch

            out["trial_peak_cuda_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out

    def _peak_rss_kb(self) -> float:
        try:
            for line in self.STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
        except OSError:
            pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform == "darwin" else float(peak)  # bytes on macOS
