"""Pretrained weights offline: a fake Hugging Face cache built from a timm model's own
weights, a folder of per-backbone files, resampling for another input size, the errors."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from nrfer.models.backbone import create_backbone
from nrfer.models.pretrained import PretrainedError

NAME = "vit_tiny_patch16_224"
REPO = "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"


@pytest.fixture(scope="module")
def weights():
    """What timm's hub would hold: the full model, classifier head included."""
    torch.manual_seed(0)
    return timm.create_model(NAME, pretrained=False).state_dict()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, weights):
    """A Hugging Face cache laid out as huggingface_hub writes it (refs/main -> snapshot)."""
    cache = tmp_path / "hf" / "hub"
    snapshot = cache / REPO / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / REPO / "refs").mkdir()
    (cache / REPO / "refs" / "main").write_text("0123abcd")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(snapshot / "model.safetensors"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_weights_load_offline_from_the_local_cache(hf_cache, weights):
    model = create_backbone(NAME, pretrained="hub")
    report = model.nrfer_pretrained
    assert report["file"].startswith(str(hf_cache)) and report["resampled"] == []
    assert report["dropped"] == ["head.bias", "head.weight"]  # our head replaces timm's
    own = model.state_dict()
    assert report["tensors"] == len(own) == len(weights) - 2
    for k, v in own.items():
        torch.testing.assert_close(v, weights[k], msg=k)


def test_other_input_size_resamples_the_position_embedding(hf_cache, weights):
    model = create_backbone(NAME, {"img_size": 64}, pretrained="hub")
    report = model.nrfer_pretrained
    assert report["resampled"] == ["pos_embed"]
    assert tuple(model.pos_embed.shape) == (1, 1 + (64 // 16) ** 2, 192)
    torch.testing.assert_close(model.pos_embed[:, 0], weights["pos_embed"][:, 0])  # class token
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, weights["blocks.0.attn.qkv.weight"])
    patch8 = create_backbone(NAME, {"img_size": 64, "patch_size": 8}, pretrained="hub")
    assert patch8.nrfer_pretrained["resampled"] == ["patch_embed.proj.weight", "pos_embed"]


def test_fit_prints_and_records_what_the_load_did(hf_cache, tmp_path, capsys):
    import json

    from nrfer.train import RunPaths, record_pretrained

    paths = RunPaths(tmp_path / "run")
    paths.out.mkdir()
    wrapped = torch.nn.Sequential(create_backbone(NAME, {"img_size": 64}, pretrained="hub"))
    record_pretrained(wrapped, paths)
    out = capsys.readouterr().out
    assert out.count("pretrained:") == 1 and "resampled: pos_embed" in out
    assert "dropped (head): head.bias, head.weight" in out
    report = json.loads(paths.pretrained.read_text())
    assert report["resampled"] == ["pos_embed"] and report["file"].startswith(str(hf_cache))
    record_pretrained(torch.nn.Linear(2, 2), RunPaths(tmp_path / "none"))  # no load: nothing
    assert not (tmp_path / "none").exists()


def test_missing_cache_entry_names_backbone_place_and_command(hf_cache):
    with pytest.raises(PretrainedError) as e:
        create_backbone("deit_tiny_patch16_224", pretrained="hub")
    msg = str(e.value)
    assert "'deit_tiny_patch16_224'" in msg and str(hf_cache) in msg
    assert "trials never download" in msg
    assert "nrfer weights fetch --backbone deit_tiny_patch16_224" in msg  # and without internet:
    assert f"copy that machine's Hugging Face cache (~/.cache/huggingface/hub) to {hf_cache}" in msg


def test_a_folder_holds_one_file_per_backbone(tmp_path, weights):
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(weights, folder / f"{NAME}.pth")
    model = create_backbone(NAME, pretrained=str(folder))
    assert model.nrfer_pretrained["file"] == str(folder / f"{NAME}.pth")
    with pytest.raises(
        PretrainedError,
        match=r"no weights for backbone 'deit_tiny_patch16_224'.*deit_tiny_patch16_224\.safetensors",
    ):
        create_backbone("deit_tiny_patch16_224", pretrained=str(folder))


def test_weights_of_another_architecture_are_an_error_not_a_partial_load(tmp_path, weights):
    torch.save(weights, tmp_path / "w.pth")
    with pytest.raises(PretrainedError, match=r"does not fit .*unexpected \(\d+\): blocks\.1\."):
        create_backbone(NAME, {"depth": 1}, pretrained=str(tmp_path / "w.pth"))
    partial = {k: v for k, v in weights.items() if not k.startswith("blocks.11.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(PretrainedError, match=r"missing \(\d+\): blocks\.11\."):
        create_backbone(NAME, pretrained=str(tmp_path / "partial.pth"))
