"""What `nrfer sweep` prints by default: a line per trial event, the status line, the
leaderboard and the UI link; none of Ray's boxes or other libraries' INFO lines."""

import re
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, fake_curves, tiny_space

pytestmark = pytest.mark.slow


def test_the_terminal_is_one_line_per_event_and_a_status_line(tmp_path, synthetic_root):
    space = tiny_space(
        "console",
        synthetic_root,
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
        budget={"num_samples": 4, "max_concurrent": 2},
    )
    space["tracking"] = {"system_metrics": False}
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(space))
    out = subprocess.run(
        [
            sys.executable, "launch.py", "--space", str(path),
            "--storage", str(tmp_path / "storage"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    lines = text.strip().splitlines()
    names = sorted({m.group(1) for m in re.finditer(r"^(t0\d) .*: started$", text, re.M)})
    assert names == ["t01", "t02", "t03", "t04"]
    for t in names:  # each trial: one start, one end, an epoch line per epoch it ran
        ends = re.findall(rf"^{t} .*: (finished|stopped early after epoch \d)", text, re.M)
        epochs = re.findall(rf"^{t} .*: epoch (\d)/2 val_acc 0\.\d{{4}}$", text, re.M)
        assert len(ends) == 1, (t, text)
        assert epochs == (["1", "2"] if ends[0] == "finished" else ["1"]), (t, text)
        # the end line gives the trial's best epoch (what it is ranked by), and the last
        # epoch's value only where it differs
        values = re.findall(rf"^{t} .*: epoch \d/2 val_acc (0\.\d{{4}})$", text, re.M)
        (end,) = re.findall(
            rf"^{t} .*: (?:finished|stopped early after epoch \d) (.*)$", text, re.M
        )
        best, last = max(values), values[-1]
        assert end == f"best val_acc {best}" + (f" (last epoch {last})" if last != best else ""), (
            end
        )
    status = re.findall(
        r"^\[(\d)/4 done, (\d) running, (\d) pending \| .* elapsed, ETA", text, re.M
    )
    # in a log: after the first and the last end (and at most once a minute between)
    done = [int(s[0]) for s in status]
    assert done[0] == 1 and done[-1] == 4 and done == sorted(done) and len(done) <= 4
    assert status[-1][1:] == ("0", "0")
    assert "best val_acc 0." in text and "sweep console: 4 trials, 0 errors" in text
    assert re.search(
        r"^its trials: http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning"
        r"&compareRunsMode=TABLE&viewStateShareKey=nrfer-[0-9a-f]{16}$",
        text,
        re.M,
    )
    assert "MLflow UI: nrfer ui --sweep console --tracking-uri sqlite:///" in text
    for noise in (
        "╭",
        "TensorBoard",
        "A new study created",
        "Started a local Ray instance",
        "INFO",
    ):
        assert noise not in text, noise
    # the start-up: the first line at once, then each phase with its duration and the time
    # since launch, all before the first trial starts (before: 77-113 s of silence)
    assert lines[0] == f"nrfer sweep: {path}", lines[0]
    phases = re.findall(r"^\[(\d+)m(\d\d)s\] (.+?)(?:: .*)? \((\d+\.\d) s\)$", text, re.M)
    assert [p[2] for p in phases] == [
        "space, data, weights, storage and store checked",
        "sweep state and Optuna study",
        "Ray",
        "data read once for every trial",
        "MLflow parent run",
        "searcher and Tune",  # (crash-recovery records: a line on a resume only)
    ], phases
    since_launch = [int(m) * 60 + int(s) for m, s, *_ in phases]
    assert since_launch == sorted(since_launch)
    # the early-stopping rule's one description: the start-up line and the parent run's tag
    rule = "asha (rungs from epoch 1, reduction 2, up to 2 epochs)"
    assert f"searcher and Tune: tpe + {rule}, 2 trials at a time" in text
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == "console"]
    (parent,) = client.search_runs([exp.experiment_id], "tags.`nrfer.role` = 'sweep'")
    assert parent.data.tags["nrfer.early_stopping"] == rule
    started = next(i for i, line in enumerate(lines) if line.endswith(": started"))
    assert lines[started - 1].startswith("[") and "searcher and Tune" in lines[started - 1]
    assert len(lines) < 55, text  # (6 start-up lines since the launch counts)


def test_a_large_sweep_prints_about_two_lines_per_trial(tmp_path):
    """64 trials x 100 epochs (a fast fake trainable under a real Tune): a line when each
    starts and ends, no epoch lines, the status line after the first and the last end (and
    at most once a minute between); at most 8 trials, every epoch has its line."""
    import io

    from ray.tune.schedulers import FIFOScheduler

    from sweep.runtime.console import EPOCH_LINES_UP_TO, Console

    out = io.StringIO()
    console = Console(64, "val_acc", "max", 100, stream=out)
    qs = [round(0.3 + i / 128, 4) for i in range(64)]
    ran = fake_curves(FIFOScheduler(), qs, 100, tmp_path / "big", [console], concurrent=2)
    assert ran == [100] * 64
    lines = out.getvalue().splitlines()
    assert sum(line.endswith(": started") for line in lines) == 64
    assert sum(": finished best val_acc" in line for line in lines) == 64
    assert not [line for line in lines if ": epoch " in line]
    status = [line for line in lines if line.startswith("[")]
    assert status[0].startswith("[1/64 done") and status[-1].startswith("[64/64 done, 0 running")
    assert "| best val_acc 0.7922 (" in status[-1], status[-1]  # the last trial's q
    assert len(lines) <= 2 * 64 + 2 + 1, len(lines)  # the run is well under a minute

    small = io.StringIO()
    few = Console(4, "val_acc", "max", 3, stream=small)
    assert EPOCH_LINES_UP_TO == 8 and few.per_epoch
    fake_curves(FIFOScheduler(), [0.1, 0.2, 0.3, 0.4], 3, tmp_path / "small", [few])
    text = small.getvalue()
    assert len(re.findall(r": epoch [123]/3 val_acc 0\.\d{4}$", text, re.M)) == 12
    done = re.findall(
        r"^\[(\d)/4 done", text, re.M
    )  # the first and last end (a minute apart: more)
    assert done[0] == "1" and done[-1] == "4" and len(done) <= 4
