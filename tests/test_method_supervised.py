"""The supervised reference method: shapes, a clear error without classes, loss goes down."""
import pytest
import torch

from motionclr.config import Config
from motionclr.train.methods import build_method


def _cfg(**params):
    cfg = Config()
    cfg.method.name = "supervised"
    cfg.model.backbone, cfg.model.width = "small3d", 4
    cfg.clip.crop = 32
    cfg.method.params = params
    return cfg


def test_needs_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        build_method(_cfg())


def test_loss_decreases_on_a_fixed_batch_and_embed_shape():
    torch.manual_seed(0)
    model = build_method(_cfg(num_classes=3))
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    # learnable: each class has its own brightness, under noise
    noise = torch.randint(0, 100, (6, 1, 3, 8, 40, 40), generator=g)
    batch = {"rgb": (noise + 70 * labels[:, None, None, None, None, None]).to(torch.uint8),
             "label": labels}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(15):
        loss, logs = model(batch, torch.Generator().manual_seed(step))
        assert set(logs) == {"loss", "acc"} and loss.dim() == 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    x = torch.rand(2, 3, 8, 32, 32)
    assert model.embed(x).shape == (2, model.backbone.out_dim)
    with pytest.raises(ValueError, match="unlabelled"):
        model({**batch, "label": torch.tensor([0, -1, 2, 0, 1, 2])})
