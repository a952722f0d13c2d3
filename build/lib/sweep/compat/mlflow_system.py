"""Shim into MLflow's system-metrics monitor (checked on MLflow 3.17): a monitor that
publishes each sample as it is taken and publishes what it holds when it stops."""

from __future__ import annotations

import inspect

from sweep.compat.guard import shim


def _probe_monitor() -> None:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.utils.autologging_utils import BatchMetricsLogger

    init = inspect.getsource(SystemMetricsMonitor.__init__)
    for name in ("self._process", "self._shutdown_event", "self.mlflow_logger"):
        assert name in init, f"SystemMetricsMonitor.__init__ sets no {name}"
    for method in ("aggregate_metrics", "publish_metrics", "finish", "start"):
        assert callable(getattr(SystemMetricsMonitor, method, None)), method
    assert callable(getattr(BatchMetricsLogger, "flush", None))


@shim(
    "mlflow",
    "MLflow's monitor buffers samples in a batch logger flushed only by finish(), which a "
    "trial the scheduler stops never reaches, and its finish() drops the samples taken since "
    "the last interval; mlflow.start_run(log_system_metrics=True) has the same monitor and "
    "needs the fluent active run, which trials (MlflowClient) do not use",
    _probe_monitor,
)
def trial_monitor(run_id: str, uri: str, interval_s: float, resumed: bool):
    """A started system-metrics monitor on `run_id` that loses no sample: each goes out as
    it is taken, and `finish` publishes the samples taken since the last one (a trial shorter
    than one interval still gets one)."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class TrialMonitor(SystemMetricsMonitor):
        def publish_metrics(self, metrics):
            super().publish_metrics(metrics)
            self.mlflow_logger.flush()

        def finish(self):
            if self._process is None:
                return
            self._shutdown_event.set()
            self._process.join()
            self._process = None
            if metrics := self.aggregate_metrics():
                self.publish_metrics(metrics)

    monitor = TrialMonitor(
        run_id, sampling_interval=interval_s, resume_logging=resumed, tracking_uri=uri
    )
    monitor.start()
    return monitor
