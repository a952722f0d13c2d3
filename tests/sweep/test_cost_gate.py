"""Cost measured alone on its device (sweep.runtime.cost_gate): a measurement waits for the
epoch another trial is training to end, and no epoch starts while it times; the load is
recorded beside it."""

import multiprocessing as mp
import time

from sweep.runtime.cost_gate import DeviceGate, Load


def trainer(folder, events, epoch_s):
    gate = DeviceGate("i1", "cpu", folder)
    gate.hold()
    events.put(("epoch1 start", time.monotonic()))
    time.sleep(epoch_s)
    events.put(("epoch1 end", time.monotonic()))
    gate.release()
    time.sleep(0.05)  # Tune's report: a waiting measurement takes the device here
    gate.hold()
    events.put(("epoch2 start", time.monotonic()))
    gate.release()


def test_a_measurement_waits_for_the_epoch_in_flight_and_blocks_the_next(tmp_path):
    ctx = mp.get_context("fork")
    events = ctx.Queue()
    p = ctx.Process(target=trainer, args=(tmp_path, events, 1.0))
    p.start()
    assert events.get(timeout=20)[0] == "epoch1 start"
    gate = DeviceGate("i1", "cpu", tmp_path)
    with gate.alone() as waited, Load() as load:
        inside = time.monotonic()
        time.sleep(0.5)  # the timing
        left = time.monotonic()
    p.join(timeout=20)
    got = dict(events.get(timeout=5) for _ in range(2))
    assert waited >= 0.7  # it waited for the epoch in flight (1 s, started before it asked)
    assert got["epoch1 end"] <= inside  # never timed while the other trial trained
    assert got["epoch2 start"] >= left  # and the next epoch waited for it
    record = load.to_dict(waited)
    assert 0 <= record["cpu_busy_percent"] <= 100 and record["other_trials_training"] == 0
    # another device, another sweep: nothing to wait for
    other = DeviceGate("i1", "cuda_0", tmp_path)
    with other.alone() as waited_other:
        assert waited_other < 0.2
    gate.close()
    other.close()


def test_a_sweeps_gates_are_removed_at_its_end_and_no_other_sweeps(tmp_path):
    from sweep.runtime.cost_gate import remove_gates

    for instance, device in (("a1", "cpu"), ("a1", "cuda:0"), ("b2", "cpu")):
        DeviceGate(instance, device, tmp_path).close()
    (tmp_path / "a1-notes.txt").write_text("not a gate")
    assert remove_gates("a1", tmp_path) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a1-notes.txt",
        "b2-cpu.busy",
        "b2-cpu.gate",
    ]
