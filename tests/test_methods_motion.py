"""MoDist and MSCL method classes: every term's shape, gradients, loss goes down (CPU, tiny)."""
import pytest
import torch

from motionclr.config import Config
from motionclr.train.methods.modist import MoDist
from motionclr.train.methods.mscl import MSCL

MODIST_TERMS = {"loss_rgb", "loss_flow", "loss_mx", "loss_mx_r"}
MSCL_TERMS = MODIST_TERMS | {"loss_lmcl"}  # fra=paper: the rotation is a negative inside
RELEASE_TERMS = MODIST_TERMS | {"loss_flow_aug", "loss_mx_aug", "loss_mx_r_aug", "loss_lmcl"}


def _cfg(**params):
    cfg = Config()
    cfg.model.backbone, cfg.model.width, cfg.model.dim = "small3d", 4, 16
    cfg.method.queue_size, cfg.method.temperature = 32, 0.2
    cfg.clip.crop, cfg.clip.clip_len = 32, 8  # the batches below hold 8-frame clips
    cfg.method.params = {"flow_encoder_args": {"widths": [4, 8], "blocks": [1, 1]}, **params}
    return cfg


def _batch(b=4, t=8, hw=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.randint(0, 256, (b, 2, 3, t, hw, hw), generator=g, dtype=torch.uint8),
            "flow": torch.randint(0, 256, (b, 2, 2, t, hw, hw), generator=g, dtype=torch.uint8)}


@pytest.mark.parametrize("cls,names", [(MoDist, MODIST_TERMS), (MSCL, MSCL_TERMS)])
def test_terms_shapes_and_gradients(cls, names):
    torch.manual_seed(0)
    model = cls(_cfg())
    loss, logs = model.training_step(_batch(), torch.Generator().manual_seed(1))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(logs) == names | {"loss"}
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    torch.testing.assert_close(logs["loss"], sum(logs[n] for n in names))
    loss.backward()
    mods = [model.backbone, model.projector, model.flow_encoder, model.flow_projector]
    if cls is MSCL:
        mods.append(model.lmcl_neck)
    for mod in mods:
        grads = [p.grad for p in mod.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    for mod in (model.momentum_backbone, model.momentum_flow_encoder):
        assert all(p.grad is None for p in mod.parameters())
    # both queues received the 4 keys of this batch
    assert model.rgb_queue_ptr.item() == 4 and model.flow_queue_ptr.item() == 4


def test_mscl_embeddings_and_lmcl_steps():
    torch.manual_seed(0)
    model = MSCL(_cfg())
    v1, v2 = model.views(_batch(), torch.Generator().manual_seed(1))[:2]
    emb = model.embed_views(v1, v2, torch.Generator().manual_seed(2))
    for key in ("rgb_q", "rgb_k", "flow_q", "flow_k", "rot_q", "rot_k"):
        assert emb[key].shape == (4, 16)
        torch.testing.assert_close(emb[key].norm(dim=1), torch.ones(4))
    assert not torch.allclose(emb["rot_q"], emb["flow_q"])  # the rotation changed the input
    rgb, flow, rot = model.lmcl_steps(emb)
    # LMCL reads small3d's second stage (T = 4 at 8 frames), like the flow encoder's 4 steps
    assert rgb.shape == flow.shape == rot.shape == (4, 4, model.flow_encoder.out_dim)


def test_mscl_options_drop_terms():
    model = MSCL(_cfg(fra="release", aug_flow_weights=[1.0, 0.0], lmcl_weight=0.0))
    _, logs = model.training_step(_batch(), torch.Generator().manual_seed(1))
    assert set(logs) == MODIST_TERMS | {"loss_flow_aug", "loss"}
    model = MSCL(_cfg(fra="release"))
    _, logs = model.training_step(_batch(), torch.Generator().manual_seed(1))
    assert set(logs) == RELEASE_TERMS | {"loss"}
    model = MSCL(_cfg(fra="none"))
    _, logs = model.training_step(_batch(), torch.Generator().manual_seed(1))
    assert set(logs) == MSCL_TERMS | {"loss"}


def test_flow_norm_option():
    model = MoDist(_cfg(flow_norm="max"))
    flow = torch.randn(2, 2, 4, 8, 8) * 5
    mag = model.prepare_flow(flow).pow(2).sum(1).sqrt()
    torch.testing.assert_close(mag.amax(dim=(-2, -1)), torch.ones(2, 4), atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        MoDist(_cfg(flow_norm="bogus"))


@pytest.mark.parametrize("cls", [MoDist, MSCL])
def test_loss_decreases_on_fixed_batch(cls, monkeypatch):
    torch.manual_seed(0)
    model = cls(_cfg())
    # a fixed queue and fixed augmentations make the objective a fixed function
    monkeypatch.setattr(model, "enqueue", lambda *a, **k: None)
    batch = _batch(seed=3)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss, _ = model.training_step(batch, torch.Generator().manual_seed(5))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.momentum_update(0.99)
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_mscl_rotates_both_views_by_one_angle():
    model = MSCL(_cfg())
    seen = []
    rotate = model.rotation.__call__

    def spy(flow, generator=None, k=None):
        out, k_used = rotate(flow, generator, k=k)
        seen.append(k_used.clone())
        return out, k_used

    model.rotation = spy
    model.training_step(_batch(), torch.Generator().manual_seed(1))
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])
    assert ((seen[0] >= 1) & (seen[0] <= 8)).all()  # 36..288 degrees, never 0


def test_mscl_draws_clips_with_mds_from_the_index():
    from motionclr.datasets.samplers import MDSPair, RandomClip
    model = MSCL(_cfg())
    assert isinstance(model.sampler(), MDSPair) and model.needs_index
    # the query comes from the chosen (high motion-change) starts only
    chosen = [False] * 30  # clips of 16 frames at stride 2 in 60 frames: starts 0..29
    chosen[9] = True
    import numpy as np
    q, k = model.sampler().starts(60, np.random.default_rng(0), {"mds_chosen": chosen})
    assert q == 9 and k == 9
    plain = MSCL(_cfg(sampler="random"))
    assert isinstance(plain.sampler(), RandomClip) and not plain.needs_index
    with pytest.raises(ValueError, match="valid"):
        MSCL(_cfg(sampler="uniform"))
