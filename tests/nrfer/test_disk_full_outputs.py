"""Commands that write files, on a nearly full disk (a real tmpfs, filled): `nrfer export`
and `nrfer evaluate --out` exit with one line naming the file and the free space, and leave
no truncated file (issue 41: a 348 KB m.onnx, a lone confusion.csv, "[Errno 28]" alone); an
earlier good export survives. Skipped where mounting is not permitted."""

import os
import subprocess

import pytest

from nrfer.config import make_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_config_dict):
    from nrfer.train import fit

    out = tmp_path_factory.mktemp("full") / "run"
    raw = {**tiny_config_dict, "train": {**tiny_config_dict["train"], "epochs": 1}}
    fit(make_config(raw), out_dir=out, evaluate_test=False)
    return out / "checkpoint" / "best.pt"


@pytest.fixture
def disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


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
