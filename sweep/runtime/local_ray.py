"""Starting Ray for a sweep: node address on loopback and token authentication on when it is
local (Ray 2.60's gcs_server, raylet and workers still listen on all interfaces; the token
is what keeps others out), a private temp folder (its session logs can hold environment
values), and no AWS keys copied into trial runtime envs (local workers inherit them)."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import ray

from sweep.compat.ray_tune import local_node_args, stop_env_propagation

log = logging.getLogger("nrfer.sweep")
_REAPER: list = []  # this driver's watchdog (sweep.runtime.reaper), once started
LOCAL_RAY_IP = "127.0.0.2"  # a local run listens on loopback only
# Tune puts these into each trial actor's runtime_env, which Ray's agent writes to its logs.
NOT_PROPAGATED = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECURITY_TOKEN",
    "AWS_SESSION_TOKEN",
)


def private_temp_dir() -> str:
    """`r` inside $NRFER_RAY_TMP, else inside /tmp/nrfer-ray-<uid>: a folder only this user
    can enter (0700). Ray makes its own temp folder world-writable (0777), hence the private
    parent. Short, since Ray puts Unix sockets under it."""
    default = Path(tempfile.gettempdir()) / f"nrfer-ray-{os.getuid()}"
    parent = Path(os.environ.get("NRFER_RAY_TMP") or default)
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = parent.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(
            f"Ray temp folder {parent} belongs to another user; set NRFER_RAY_TMP to a folder of yours"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        parent.chmod(0o700)
    return str(parent / "r")


def keep_secrets_out_of_runtime_envs() -> None:
    """Tune copies AWS_* into every trial's runtime_env; Ray's runtime-env agent then logs
    them. Local workers already inherit the driver's environment and cluster nodes have
    their own, so the copy is dropped (`sweep.compat.ray_tune.stop_env_propagation`)."""
    stop_env_propagation(NOT_PROPAGATED)


def init_ray(address: str | None = None, verbose: int = 1, **ray_args) -> bool:
    """Connect to `address`, or start Ray here on loopback (`ray_args` add to ray.init, e.g.
    num_cpus); returns whether it started or connected it (False: it was running)."""
    keep_secrets_out_of_runtime_envs()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=verbose > 1)
    else:
        # unset, Ray turns token authentication on for a new local cluster (setting it here
        # would not: Ray reads its config at import); say so when someone turned it off
        if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
            log.warning(
                "RAY_AUTH_MODE=%s: Ray's ports listen on every network interface and nothing "
                "checks who connects; unset it to keep token authentication on",
                os.environ["RAY_AUTH_MODE"],
            )
        ray.init(
            include_dashboard=False,
            log_to_driver=verbose > 1,
            # quiet: not Ray's start-up INFO lines nor its token-authentication notice
            logging_level=logging.ERROR if verbose == 0 else logging.INFO,
            **local_node_args(LOCAL_RAY_IP, private_temp_dir()),
            **ray_args,
        )
        # Ray's agents outlive a driver killed with SIGKILL: a watchdog ends them (one per
        # driver process; it follows every Ray this process starts)
        if not _REAPER:
            from sweep.runtime.reaper import start as start_reaper

            _REAPER.append(start_reaper())
    return True
