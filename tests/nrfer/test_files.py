"""atomic_file on a full disk (a real 64 KiB tmpfs; skipped where mounting is not
permitted): one error naming the file and the free space, for plain writes and for
torch.save (which reports ENOSPC as a RuntimeError), and no partial file left."""

import pytest
import torch

from nrfer.errors import DiskFull
from nrfer.files import atomic_file


@pytest.fixture
def full_disk(tmpfs):
    return tmpfs("small", "64k")


@pytest.mark.parametrize("kind", ["text", "torch.save"])
def test_a_full_disk_names_the_file_and_the_free_space(full_disk, kind):
    (full_disk / "old.txt").write_text("kept")
    target = full_disk / ("best.pt" if kind == "torch.save" else "record.json")
    with pytest.raises(DiskFull) as raised:
        with atomic_file(target, "wb" if kind == "torch.save" else "w") as f:
            if kind == "torch.save":
                torch.save({"w": torch.zeros(100_000)}, f)
            else:
                f.write("x" * 200_000)
    message = str(raised.value)
    assert message.startswith(f"no space left to write {target} ({full_disk}: ")
    assert "MiB free" in message and "--resume" in message and "Errno" not in message
    assert raised.value.errno == 28
    assert sorted(p.name for p in full_disk.iterdir()) == ["old.txt"]  # no partial file
    assert (full_disk / "old.txt").read_text() == "kept"


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(ValueError, match="not a disk problem"):
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("x")
            raise ValueError("not a disk problem")
    assert list(tmp_path.iterdir()) == []
