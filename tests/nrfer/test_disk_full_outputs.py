"""Commands that write files, on a nearly full disk (a real tmpfs, filled): `nrfer export`
and `nrfer evaluate --out` exit with one line naming the file and the free space, and leave
no truncated file (issue 41: a 348 KB m.onnx, a lone confusion.csv, "[Errno 28]" alone); an
earlier good export survives. Skipped where mounting is not permitted."""

import os

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def model(one_epoch_model):
    return one_epoch_model


@pytest.fixture
def disk(tmpfs):
    return tmpfs("disk", "4m")


def fill(folder, leave_kib: int) -> None:
    st = os.statvfs(folder)
    size = max(0, st.f_bavail * st.f_frsize - leave_kib * 1024)
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * size)


def test_export_and_evaluate_on_a_full_disk_name_the_file_and_leave_nothing_half(
    model, disk, capsys
):
    from nrfer.evaluate import main as evaluate_main
    from nrfer.export import main as export_main

    fill(disk, leave_kib=60)
    assert export_main(["--model", str(model), "--onnx", str(disk / "m.onnx"), "--faces", "4"]) == 2
    err = capsys.readouterr().err
    assert f"no space left to write {disk / 'm.onnx'}" in err and "MiB free" in err, err
    assert "Traceback" not in err and sorted(p.name for p in disk.iterdir()) == ["filler"]
    assert evaluate_main(["--model", str(model), "--out", str(disk / "ev")]) == 2
    err = capsys.readouterr().err
    assert "no space left to write" in err and str(disk / "ev") in err and "MiB free" in err, err
    assert list((disk / "ev").iterdir()) == []  # all outputs or none: no lone confusion.csv
    # an earlier good export survives a later one that runs out of space
    (disk / "filler").unlink()
    assert export_main(["--model", str(model), "--onnx", str(disk / "m.onnx"), "--faces", "4"]) == 0
    good = (disk / "m.onnx").read_bytes()
    capsys.readouterr()
    fill(disk, leave_kib=60)
    assert export_main(["--model", str(model), "--onnx", str(disk / "m.onnx"), "--faces", "4"]) == 2
    assert (disk / "m.onnx").read_bytes() == good
    assert sorted(p.name for p in disk.iterdir()) == ["ev", "filler", "m.onnx"]
