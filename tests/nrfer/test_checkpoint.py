import pytest
import torch

from nrfer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_and_no_temp_files_left(tmp_path):
    path = save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "c" / "last.pt")
    state = load_checkpoint(tmp_path / "c")
    assert state["epoch"] == 3 and state["model"]["w"].tolist() == [1.0, 1.0]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_corrupt_foreign_and_code_carrying_files_are_refused(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "corrupt.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an nrfer checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "nrfer-checkpoint", "version": 1, "obj": object()}, tmp_path / "code.pt")
    with pytest.raises(
        CheckpointError, match="not a readable checkpoint"
    ):  # weights_only refuses it
        load_checkpoint(tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
