"""Shape and gradient tests for motionclr.train.heads and motionclr.train.flow_encoders."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from motionclr.train.flow_encoders import (FLOW_ENCODERS, FlowResNet2D, FlowResNet3D,
                                           build_flow_encoder)
from motionclr.train.heads import (OrderHead, ProjectionMLP, init_momentum_copy,
                                   momentum_update)


@pytest.mark.parametrize("use_bn", [False, True])
def test_projection_mlp_shapes_and_grad(use_bn):
    head = ProjectionMLP(in_dim=12, hidden_dim=10, out_dim=5, use_bn=use_bn)
    assert head.out_dim == 5
    x = torch.randn(4, 12, requires_grad=True)
    assert head(x).shape == (4, 5)
    assert head(torch.randn(3, 4, 12)).shape == (3, 4, 5)  # per-step input
    head(x).sum().backward()
    assert x.grad.abs().sum() > 0
    assert any(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == use_bn


def test_projection_mlp_is_keyword_only():
    with pytest.raises(TypeError):
        ProjectionMLP(12, 10, 5)


def test_order_head_shapes_and_normalisation_modes():
    items = torch.randn(4, 6, 8)
    for mode in ("item", "concat", "frame", "none"):
        head = OrderHead(embed_dim=8, num_items=6, num_classes=4, normalize=mode)
        assert head(items).shape == (4, 4)
    torch.manual_seed(0)
    head = OrderHead(embed_dim=8, num_items=6, num_classes=4, normalize="item")
    scaled = items * torch.rand(4, 6, 1).add(0.5)  # per-item scale: removed by "item"
    torch.testing.assert_close(head(scaled), head(items))
    head.normalize = "frame"  # VCLR's quirk normalises along the item axis: not invariant
    assert not torch.allclose(head(scaled), head(items))
    with pytest.raises(ValueError):
        head(torch.randn(4, 3, 8))
    with pytest.raises(ValueError):
        OrderHead(normalize="bogus")


def test_order_head_learns_a_fixed_batch():
    torch.manual_seed(0)
    head = OrderHead(embed_dim=8, num_items=3, num_classes=2, normalize="concat")
    items, labels = torch.randn(16, 3, 8), torch.arange(16) % 2
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    first = F.cross_entropy(head(items), labels).item()
    for _ in range(30):
        loss = F.cross_entropy(head(items), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5


def test_momentum_copy_and_update():
    online, key = nn.Linear(3, 2), nn.Linear(3, 2)
    init_momentum_copy(online, key)
    assert all(not p.requires_grad for p in key.parameters())
    torch.testing.assert_close(key.weight, online.weight)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = key.weight.clone()
    momentum_update(online, key, 1.0)
    torch.testing.assert_close(key.weight, before)
    momentum_update(online, key, 0.5)
    torch.testing.assert_close(key.weight, (before + online.weight) / 2)


@pytest.mark.parametrize("name", sorted(FLOW_ENCODERS))
def test_flow_encoder_shapes_and_gradients(name):
    torch.manual_seed(0)
    enc = build_flow_encoder(name)
    assert enc.out_dim == 128
    x = torch.randn(2, 2, 8, 32, 32, requires_grad=True)
    out = enc(x)
    assert out.pooled.shape == (2, 128)
    assert out.steps.shape == (2, 4, 128)  # temporal stride 2 in the stem
    assert out.feature_map.shape[:3] == (2, 128, 4)
    torch.testing.assert_close(out.pooled, out.steps.mean(1))
    (out.pooled.sum() + out.steps.pow(2).sum()).backward()
    stem = enc.stem[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_flow_encoder_options():
    enc = FlowResNet2D(in_channels=3, widths=(8, 16), blocks=(1, 1), stem_temporal_kernel=2)
    assert enc.out_dim == 16
    out = enc(torch.randn(1, 3, 8, 16, 16))
    assert out.steps.shape == (1, 4, 16)
    enc3 = FlowResNet3D(widths=(8, 16), blocks=(1, 1), padding_mode="zeros",
                        stem_temporal_stride=1)
    assert enc3(torch.randn(1, 2, 4, 16, 16)).steps.shape == (1, 4, 16)
    with pytest.raises(TypeError):
        FlowResNet2D(2)
    with pytest.raises(ValueError):
        build_flow_encoder("nope")


def test_flow_resnet2d_is_per_frame():
    """Changing one flow frame changes only its own time step (no temporal mixing)."""
    torch.manual_seed(0)
    enc = FlowResNet2D(widths=(8, 16), blocks=(1, 1)).eval()  # eval: BN mixes no samples
    x = torch.randn(1, 2, 8, 16, 16)
    y = x.clone()
    y[:, :, 4] += 1.0  # frame 4 -> step 2 with stride 2 and a per-frame stem
    with torch.no_grad():
        diff = (enc(x).steps - enc(y).steps).abs().sum(-1)[0]
    assert diff[2] > 0 and diff[[0, 1, 3]].max() == 0
    enc3 = FlowResNet3D(widths=(8, 16), blocks=(1, 1)).eval()
    with torch.no_grad():
        diff3 = (enc3(x).steps - enc3(y).steps).abs().sum(-1)[0]
    assert (diff3 > 0).sum() > 1  # the 3D option mixes neighbouring steps
