"""A real ASHA sweep killed (SIGKILL, driver and its Ray) between every pair of ledger
writes an unbroken sweep makes, each kill by the ledger's fault hook rather than a timer,
and resumed after each: it ends in the state the unbroken sweep ends in, and ASHA's stop
decisions follow its rules over its own records. (It replaces the test that killed a sweep
at three seeded random moments: the same end-state checks, at every record boundary. Its
kills after an `ended` write are a driver killed just after a trial completed, before Tune
saved that: the test of that window alone, in test_resume.py, was trimmed for the suite's
time; the end state here has every trial's epochs logged once and none run again.)"""

import json

import pytest
import yaml
from test_resume import Sweep, asha_stops, write_space

from sweep.runtime.ledger import FAULTS_ENV, TRACE_ENV, Ledger, ledger_dir

pytestmark = pytest.mark.slow
N, MAX_EPOCHS = 4, 3


def kinds(sweep: Sweep) -> list[str]:
    return [
        line.split()[1] for line in (ledger_dir(sweep.exp_dir) / ".trace").read_text().splitlines()
    ]


def end_state(sweep: Sweep) -> dict:
    """What a sweep ends as, in terms that do not depend on trial ids or timing."""
    trials = sweep.assert_complete(N, "asha", max_epochs=MAX_EPOCHS)  # runs, files, uploads
    ledger = Ledger(sweep.exp_dir)
    state = ledger.read_sweep()
    kept, evicting = ledger.read_kept()
    scores = {t: r.score for t, r in ledger.ended.items()}
    kept_scores = [scores[t] for t in kept if t in scores]
    others = [s for t, s in scores.items() if t not in kept and s is not None]
    top = len(kept_scores) == len(kept) and min(kept_scores) >= max(others, default=-1.0)
    uploads = {
        t
        for t, r in trials.items()
        if "checkpoint/best.pt"
        in {a.path for a in sweep.client.list_artifacts(r.info.run_id, "checkpoint")}
    }
    curves = {
        t: [
            m.value
            for m in sorted(
                sweep.client.get_metric_history(r.info.run_id, "val_acc"), key=lambda m: m.step
            )
        ]
        for t, r in trials.items()
    }
    rungs = sweep.rungs()
    # the best at the last rung that decides always goes on (its score is at or above any
    # cut-off there)
    last = max(m for m in rungs if m < MAX_EPOCHS)
    best = max(rungs[last], key=lambda t: rungs[last][t])
    return {
        "status": (state["status"], state["num_trials"]),
        "tune": sorted(status for status, _ in sweep.tune_trials().values()),
        "ended": sorted(ledger.ended) == sorted(trials),
        "records done": all(
            r.completed and r.kept is not None and r.removed for r in ledger.ended.values()
        ),
        # the top 3 by score (ties either way), each uploaded, nothing else
        "kept": (len(kept), top, set(kept) == uploads, evicting),
        # ASHA's records are the trials' own results, and its stops follow its rules
        "rung records": all(
            {t: curves[t][m - 1] for t in scores} == scores for m, scores in rungs.items()
        ),
        "asha rules": {t: len(c) for t, c in curves.items()} == asha_stops(rungs, MAX_EPOCHS, rf=2),
        "best at the last rung went on": len(curves[best]) == MAX_EPOCHS,
    }


def test_a_kill_between_every_pair_of_ledger_writes_ends_as_the_unbroken_sweep(
    tmp_path, synthetic_root, monkeypatch
):
    scheduler = {"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": MAX_EPOCHS}
    path = write_space(tmp_path, synthetic_root, scheduler, N, seed=5)
    space = yaml.safe_load(path.read_text())  # a small CNN: its curves differ from epoch 1 on
    space["fixed"]["model"] = {"backbone": "resnet10t", "input_size": 32}
    space["search"] = {"optim.lr": {"loguniform": [3e-4, 1e-2]}}
    path.write_text(yaml.safe_dump(space))

    monkeypatch.setenv(TRACE_ENV, "1")
    unbroken = Sweep(tmp_path, path, storage="unbroken", store=tmp_path / "unbroken.db")
    assert unbroken.launch().wait(timeout=400) == 0, unbroken.log()
    writes = kinds(unbroken)
    pairs = list(dict.fromkeys(f"{a}>{b}" for a, b in zip(writes, writes[1:], strict=False)))
    # every record is written, in the documented order: sweep first and last
    assert writes[0] == "sweep:RUNNING" and writes[-1] == "sweep:FINISHED"
    assert {"asha", "ended", "retained", "removed", "kept"} <= set(writes), writes
    print(f"{len(writes)} ledger writes, {len(pairs)} kinds of pair: {pairs}")

    monkeypatch.setenv(FAULTS_ENV, ",".join(pairs))
    broken = Sweep(tmp_path, path, storage="broken", store=tmp_path / "broken.db")
    for launch in range(len(pairs) + 2):
        rc = broken.launch(*(["--resume"] if launch else [])).wait(timeout=400)
        if rc == 0:
            break
        assert rc == -9, broken.log()  # the hook's SIGKILL, nothing else
    assert rc == 0, broken.log()
    used = json.loads((ledger_dir(broken.exp_dir) / ".faults").read_text())["used"]
    print(f"{launch} kills, between: {used}")
    assert set(used) == set(pairs), sorted(set(pairs) - set(used))
    assert end_state(broken) == end_state(unbroken)
