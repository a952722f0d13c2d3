import pytest
import torch

from nrfer.config import ModelConfig
from nrfer.models import build_model
from nrfer.models.pretrained import PretrainedError
from nrfer.models.resizer import NeuralResizer
from nrfer.models.stn import SpatialTransformer


@pytest.mark.parametrize(
    "src, dst", [(48, 64), (48, 224), (192, 224), (384, 224), (64, 48), ((40, 56), (32, 48))]
)
def test_resizer_output_shape(src, dst):
    src = (src, src) if isinstance(src, int) else src
    dst = (dst, dst) if isinstance(dst, int) else dst
    m = NeuralResizer(dst, n=4, r=2).eval()
    assert m(torch.rand(2, 3, *src)).shape == (2, 3, *dst)


def test_resizer_gradients_flow_through_skip_and_conv_paths():
    m = NeuralResizer((64, 64), n=8, r=1)
    torch.nn.init.normal_(m.out.weight, std=0.01)  # it starts at zero (= bilinear)
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    m(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # with the conv path's output layer zeroed, the resizer is exactly the bilinear skip
    with torch.no_grad():
        m.out.weight.zero_()
        m.out.bias.zero_()
    m.eval()
    skip = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(m(x), skip)


def test_stn_starts_as_identity():
    x = torch.rand(2, 3, 48, 48)
    torch.testing.assert_close(SpatialTransformer()(x), x, atol=1e-5, rtol=1e-5)


def tiny(**kw):
    base = dict(
        backbone="vit_tiny_patch16_224",
        backbone_args={
            "img_size": 32,
            "patch_size": 8,
            "embed_dim": 32,
            "depth": 1,
            "num_heads": 2,
        },
    )
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "resizer, stn, head", [(True, True, "mlp"), (True, False, "linear"), (False, False, "linear")]
)
def test_fer_model_takes_gray_any_size_and_returns_logits(resizer, stn, head):
    cfg = tiny(head=head, stn=stn, resizer={"enabled": resizer, "n": 4})
    m = build_model(cfg, num_classes=8).eval()
    assert m.target_size == (32, 32)
    assert (m.resizer is not None) == resizer and (m.stn is not None) == stn
    for size in (48, 96):
        assert m(torch.rand(3, 1, size, size)).shape == (3, 8)
    assert m.resize(torch.rand(3, 1, 48, 48)).shape == (3, 3, 32, 32)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(
        ValueError, match="timm does not know backbone 'vit_tiny_patch16_22'.*vit_tiny_patch16_224"
    ):
        build_model(tiny(backbone="vit_tiny_patch16_22"), 8)


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    a = build_model(tiny(), 8)
    torch.save(a.backbone.state_dict(), tmp_path / "w.pth")
    b = build_model(tiny(pretrained=str(tmp_path / "w.pth")), 8)
    for (k, va), vb in zip(
        a.backbone.state_dict().items(), b.backbone.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(va, vb, msg=k)
    with pytest.raises(PretrainedError, match="'.*missing.pth' is not a weights file"):
        build_model(tiny(pretrained=str(tmp_path / "missing.pth")), 8)


def test_paper_stn_starts_as_identity_and_is_built_for_one_size():
    from nrfer.models.stn import PaperSTN

    stn = PaperSTN((384, 384))
    assert stn.fc[0].in_features == 10 * 92 * 92  # ((384 - 7 + 1) // 2 - 5 + 1) // 2 = 92
    x = torch.rand(2, 3, 384, 384)
    torch.testing.assert_close(stn(x), x, atol=1e-4, rtol=0)  # identity warp at init
    with pytest.raises(ValueError, match=r"built for \(384, 384\) inputs, got \(192, 192\)"):
        stn(torch.rand(1, 3, 192, 192))
    model = build_model(ModelConfig(backbone="resnet10t", input_size=32, stn="paper"), 8, (96, 96))
    assert model(torch.rand(2, 1, 96, 96)).shape == (2, 8)
