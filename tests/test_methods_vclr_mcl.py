"""VCLR, MCL and the MCL-combined methods on CPU (tiny), plus every registered method once."""
import numpy as np
import pytest
import torch

import motionclr.train.methods.mcl as mcl_mod
from motionclr.config import Config
from motionclr.datasets.samplers import MCLTriplet, MDSPair, SegmentClips
from motionclr.datasets.transforms import GPUAugment
from motionclr.train.losses import gradient_saliency
from motionclr.train.methods import METHODS
from motionclr.train.methods.mcl import MCL, MCLPair, capture, with_motion_focus
from motionclr.train.methods.mscl import MSCL
from motionclr.train.methods.vclr import VCLR

VCLR_TERMS = {"loss_inter", "loss_intra", "loss_segment", "loss_order"}
MCL_TERMS = {"loss_inter", "loss_intra", "loss_order", "loss_mal"}
MSCL_TERMS = {"loss_rgb", "loss_flow", "loss_mx", "loss_mx_r", "loss_lmcl"}  # fra=paper
N = 4


def _cfg(flow=False, **params):
    """Tiny config; ``flow=True`` adds a slim flow encoder (the MoDist family's params)."""
    cfg = Config()
    cfg.model.backbone, cfg.model.width, cfg.model.dim = "small3d", 4, 16
    cfg.method.queue_size, cfg.method.temperature = 32, 0.2
    cfg.clip.crop, cfg.clip.clip_len, cfg.clip.stride = 32, 8, 1
    cfg.train.epochs, cfg.train.warmup_epochs = 10, 2
    slim = {"flow_encoder_args": {"widths": [4, 8], "blocks": [1, 1]}} if flow else {}
    cfg.method.params = {**slim, **params}
    return cfg


def _batch(model, seed=0, hw=40, n=N):
    """A fake uint8 batch shaped by the method's own sampler (V clips of T frames)."""
    rng = np.random.default_rng(seed)
    clips = [model.sampler()(24, rng, None) for _ in range(n)]
    v, t = len(clips[0]), len(clips[0][0])
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.randint(0, 256, (n, v, 3, t, hw, hw), generator=g, dtype=torch.uint8),
            "flow": torch.randint(0, 256, (n, v, 2, t, hw, hw), generator=g, dtype=torch.uint8),
            "label": torch.arange(n), "index": torch.arange(n),
            "starts": torch.tensor([[int(c[0]) for c in cl] for cl in clips])}


def _step(model, seed=1, batch=None):
    return model.training_step(batch or _batch(model), torch.Generator().manual_seed(seed))


def _grads(loss, module):
    params = [p for p in module.parameters() if p.requires_grad]
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return sum(0.0 if g is None else float(g.abs().sum()) for g in gs)


def _check_logs(loss, logs, names):
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert names <= set(logs) and {k for k in logs if k.startswith("loss_")} == names
    assert all(torch.as_tensor(v).dim() == 0 and not torch.as_tensor(v).requires_grad
               for v in logs.values())
    torch.testing.assert_close(logs["loss"], sum(logs[k] for k in names))


# ----------------------------------------------------------------------------- VCLR

def test_vclr_terms_reach_their_heads_and_queues_advance():
    torch.manual_seed(0)
    model = VCLR(_cfg())
    assert isinstance(model.sampler(), SegmentClips) and len(_batch(model)["starts"][0]) == 6
    loss, logs = _step(model)
    _check_logs(loss, logs, VCLR_TERMS)
    # every head and the backbone get gradient (term by term: test_vclr_term_isolation)
    for head in ("projector", "fc_intra", "fc_tsn", "fc_order", "order_head"):
        assert _grads(loss, getattr(model, head)) > 0, head
    assert _grads(loss, model.backbone) > 0
    loss.backward()
    for name, mod in model.named_children():
        if name.startswith("momentum_"):
            assert all(p.grad is None for p in mod.parameters()), name
    assert model.queue_ptr.item() == 3 * N and model.segment_queue_ptr.item() == N


@pytest.mark.parametrize("term", ["inter", "intra", "segment", "order"])
def test_vclr_term_isolation(term):
    """A term alone moves only its own head: weights of the others set to 0."""
    others = {t: (1.0 if t == term else 0.0) for t in ("inter", "intra", "segment", "order")}
    torch.manual_seed(0)
    model = VCLR(_cfg(weights=others))
    loss, logs = _step(model)
    assert {k for k in logs if k.startswith("loss_")} == {f"loss_{term}"}
    own = {"inter": "projector", "intra": "fc_intra", "segment": "fc_tsn", "order": "fc_order"}
    for t, head in own.items():
        assert (_grads(loss, getattr(model, head)) > 0) == (t == term), (term, head)


def test_vclr_keys_are_anchor_reaug_other_segments_and_key_set():
    """With identity augmentation, the momentum encoder sees [anchor, the other two query-set
    clips, the key set]; the anchor is the first or last segment."""
    model = VCLR(_cfg())

    class Identity:
        def views(self, raw, gen=None):
            return [{"rgb": r["rgb"].float()} for r in raw]
    model.augment = Identity()
    batch = _batch(model, n=8)
    for v in range(6):  # clip v of video i holds the value 10 * v + i
        batch["rgb"][:, v] = (10 * v + torch.arange(8)).view(8, 1, 1, 1, 1).to(torch.uint8)
    seen = []
    model.momentum_backbone.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    _step(model, seed=3, batch=batch)
    vals = seen[0][:, 0, 0, 0, 0].view(8, 6).round().long()  # (N, 6) clip values
    video = vals % 10
    assert (video == torch.arange(8)[:, None]).all()
    clip = vals // 10
    anchor = clip[:, 0]
    assert set(anchor.tolist()) <= {0, 2} and len(set(anchor.tolist())) == 2
    for i in range(8):
        assert sorted(clip[i, 1:3].tolist()) == sorted({0, 1, 2} - {int(anchor[i])})
    assert (clip[:, 3:] == torch.tensor([3, 4, 5])).all()


def test_vclr_frames_option():
    model = VCLR(_cfg(frames=True)).eval()
    clips = model.sampler()(30, np.random.default_rng(0))
    assert len(clips) == 6 and all(len(c) == 1 for c in clips)
    model.train()
    loss, _ = _step(model)
    assert torch.isfinite(loss)
    model.eval()
    x = torch.randn(2, 3, 4, 32, 32)
    per_frame = torch.stack([model.backbone(x[:, :, t:t + 1]) for t in range(4)], 1).mean(1)
    torch.testing.assert_close(model.embed(x), per_frame, atol=1e-5, rtol=1e-4)


def test_vclr_runs_under_autocast():
    """Mixed dtypes (fp32 queues, bf16 heads) must not break any term."""
    torch.manual_seed(0)
    model = VCLR(_cfg())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = _step(model)
    loss.backward()
    assert torch.isfinite(loss) and model.queue.dtype == torch.float32


def test_vclr_rejects_unknown_weight():
    with pytest.raises(ValueError):
        VCLR(_cfg(weights={"interr": 1.0}))


# ----------------------------------------------------------------------------- MCL

def test_mcl_terms_gradients_queue_and_order_labels(monkeypatch):
    torch.manual_seed(0)
    model = MCL(_cfg())
    assert isinstance(model.sampler(), MCLTriplet) and model.needs_index
    assert model.augment.cfg.motion_crop
    model.set_epoch(4)  # after warm-up (2 epochs): w_mal 1, w_order (4 + 1) / 10
    labels = []
    orig = mcl_mod.order_loss
    monkeypatch.setattr(mcl_mod, "order_loss", lambda lg, lb: labels.append(lb) or orig(lg, lb))
    batch = _batch(model)
    batch["starts"] = torch.tensor([[0, 5, 6], [9, 1, 2], [1, 8, 9], [7, 0, 3]])
    loss, logs = _step(model, batch=batch)
    _check_logs(loss, logs, MCL_TERMS)
    assert logs["w_mal"] == 1.0 and logs["w_order"] == 0.5
    assert labels[0].tolist() == [1, 0, 1, 0]  # 1: the query precedes the other clips
    for mod in (model.backbone, model.projector, model.fc_intra, model.fc_order,
                model.order_head):
        assert _grads(loss, mod) > 0
    loss.backward()
    for mod in (model.momentum_backbone, model.momentum_projector, model.momentum_fc_intra,
                model.momentum_fc_order):
        assert all(p.grad is None for p in mod.parameters())
    assert model.queue_ptr.item() == 3 * N


def test_mcl_weight_schedule():
    model = MCL(_cfg())
    assert model.weights() == (0.1, 2.0)  # first epoch: warm-up; MCL's epoch 1 of 10
    model.set_epoch(1)
    assert model.weights() == (0.2, 2.0)
    model.set_epoch(2)
    assert model.weights() == (0.3, 1.0)
    model = MCL(_cfg(order_weight=0, mal_warmup_weight=1.0))
    assert model.weights() == (0.0, 1.0)


def _mal_grad_parts(model, use_features=False):
    """L_MAL alone: its gradient on the projector exists only through dscore/dA."""
    q1, q2 = mcl_mod.augment_views(model, _batch(model), [0, 0], torch.Generator().manual_seed(1))
    k = model.encode_keys([q2])[0][:, 0]
    with capture(model.sal_module) as maps:
        fmap = model.backbone.features(q1["rgb"])
        q = torch.nn.functional.normalize(model.projector(fmap.mean(dim=(2, 3, 4))), dim=1)
    score = (q * k).sum(1)
    a = fmap if use_features else maps[0]
    loss, _ = mcl_mod.mal_loss(score, a, q1["flow"], model.mal)
    return loss, a, score


def test_mcl_second_order_path_on_cpu():
    torch.manual_seed(0)
    model = MCL(_cfg())
    loss, _, _ = _mal_grad_parts(model)
    assert loss.requires_grad and 0 <= loss.item() <= 3
    # the projector sits after A: L_MAL reaches it only by differentiating the gradient
    assert _grads(loss, model.projector) > 0
    assert _grads(loss, model.backbone.body[0]) > 0  # and the first conv


def test_saliency_on_default_conv_is_spatially_resolved_on_features_flat():
    torch.manual_seed(0)
    model = MCL(_cfg())
    # small3d at 8 frames: the deepest Conv3d with T' >= 4 is the second stage's
    assert model.sal_module is model.backbone.body[3]
    for use_features, flat in ((False, False), (True, True)):
        _, fmap, score = _mal_grad_parts(model, use_features)
        sal = gradient_saliency(score, fmap)  # (N, T, H, W)
        spread = (sal.flatten(2).std(-1) / sal.flatten(2).mean(-1).clamp_min(1e-12)).max()
        assert (spread < 1e-4) == flat, (use_features, spread)


@pytest.mark.parametrize("make", [lambda: MCL(_cfg()), lambda: with_motion_focus(MSCL)(_cfg(flow=True))],
                         ids=["mcl", "mscl+mcl"])
def test_saliency_in_float32_under_autocast(make, monkeypatch):
    torch.manual_seed(0)
    model = make()
    dtypes = []
    orig = mcl_mod.gradient_saliency

    def spy(score, fmap, **kw):
        out = orig(score, fmap, **kw)
        dtypes.append((score.dtype, fmap.dtype, out.dtype))
        return out
    monkeypatch.setattr(mcl_mod, "gradient_saliency", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = _step(model)
    loss.backward()
    assert dtypes == [(torch.float32,) * 3]


# ----------------------------------------------------------------------------- combined

def test_mscl_plus_mcl_terms_sampler_and_second_order():
    torch.manual_seed(0)
    cls = with_motion_focus(MSCL)
    assert cls.name == "mscl+mcl" and cls.needs_index
    model = cls(_cfg(flow=True))
    assert isinstance(model.sampler(), MCLPair) and model.augment.cfg.motion_crop
    assert len(model.sampler()(30, np.random.default_rng(0))) == 2
    assert isinstance(cls(_cfg(flow=True, tubelet_sampler="mds")).sampler(), MDSPair)
    batch = _batch(model)
    batch["motion_map"] = torch.rand(N, 2, 7, 7)  # the offline map is used when present
    loss, logs = _step(model, batch=batch)
    _check_logs(loss, logs, MSCL_TERMS | {"loss_mal"})
    assert model.rgb_queue_ptr.item() == N
    model.set_epoch(5)
    _, logs = _step(model)
    assert logs["loss_mal"] < 1.0  # weight 1 after warm-up (<= 3 * 1 / 3 of the warm-up)
    assert "loss_mal" not in _step(cls(_cfg(flow=True, mal_warmup_weight=0.0)))[1]


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("cls", [VCLR, MCL, with_motion_focus(MSCL)],
                         ids=["vclr", "mcl", "mscl+mcl"])
def test_loss_decreases_on_fixed_batch(cls, monkeypatch):
    torch.manual_seed(0)
    cfg = _cfg(flow=cls not in (VCLR, MCL))
    cfg.clip.clip_len = 4  # half the frames: this test takes 6 steps
    model = cls(cfg)
    monkeypatch.setattr(model, "enqueue", lambda *a, **k: None)  # frozen queues
    # colour jitter and blur dominate the CPU time here and do not matter for the check
    model.augment = GPUAugment(model.augment.cfg, jitter_p=0.0, blur_p=0.0)
    batch = _batch(model, seed=3)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss, _ = _step(model, seed=5, batch=batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.momentum_update(0.99)
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


# ----------------------------------------------------------------------------- registry

def test_registry_has_every_method():
    assert {"moco", "modist", "mscl", "vclr", "mcl"} <= set(METHODS)


@pytest.mark.parametrize("shuffle_bn", [1, 2])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_runs_one_step(name, shuffle_bn):
    """Also under shuffle-BN: every key path (MCL's and VCLR's multi-view keys, the flow
    keys) goes through ``key_forward``, and MCL's second-order L_MAL through split BN."""
    from motionclr.train.methods import build_method
    from motionclr.train.methods.modist import MoDist
    torch.manual_seed(0)
    cfg = _cfg(flow=issubclass(METHODS[name], MoDist))
    cfg.method.name, cfg.method.shuffle_bn, cfg.train.batch_size = name, shuffle_bn, N
    if name == "supervised":  # labels 0..N-1 in the fake batch
        cfg.method.params = {**cfg.method.params, "num_classes": N}
    model = build_method(cfg)
    assert model.name == name
    split = [type(m).__name__.startswith("Split") for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert split and all(split) == (shuffle_bn > 1 and name != "supervised")
    loss, logs = _step(model)
    assert torch.isfinite(loss) and "loss" in logs
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    x = model.eval_augment({"rgb": _batch(model)["rgb"][:, 0]})["rgb"]
    assert model.eval().embed(x).shape == (N, model.backbone.out_dim)


def test_method_terms_weights_compose_and_unknown_names_fail():
    """``method.terms`` reweights named terms of any method; a typo lists the valid names."""
    from motionclr.config import load_config
    from motionclr.train.methods import build_method
    from tests.conftest import tiny_overrides
    base = tiny_overrides(".", ".")
    g = torch.Generator().manual_seed(0)
    batch = {"rgb": torch.randint(0, 255, (4, 2, 3, 4, 32, 32), dtype=torch.uint8,
                                  generator=g)}
    torch.manual_seed(0)
    m1 = build_method(load_config(None, base))
    torch.manual_seed(0)
    m2 = build_method(load_config(None, base + ["method.terms={loss_nce: 0.5}"]))
    l1, _ = m1.training_step(batch, torch.Generator().manual_seed(1))
    l2, _ = m2.training_step(batch, torch.Generator().manual_seed(1))
    assert torch.allclose(l2, 0.5 * l1)
    m3 = build_method(load_config(None, base + ["method.terms={loss_typo: 1}"]))
    with pytest.raises(KeyError, match="loss_nce"):
        m3.training_step(batch, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["moco", "modist", "vclr"])
def test_queue_never_uses_the_querys_own_video_as_negative(name):
    from motionclr.config import load_config
    from motionclr.train.methods import build_method
    from tests.conftest import tiny_overrides
    torch.manual_seed(0)
    m = build_method(load_config(None, tiny_overrides(".", ".", **{"method.name": name})))
    g = torch.Generator().manual_seed(0)
    v = 6 if name == "vclr" else 2
    batch = {"rgb": torch.randint(0, 255, (4, v, 3, 4, 32, 32), dtype=torch.uint8, generator=g),
             "flow": torch.randint(0, 255, (4, v, 2, 4, 32, 32), dtype=torch.uint8,
                                   generator=g),
             "index": torch.tensor([7, 3, 9, 1])}
    m(batch, g)                                   # forward(): ids enter the queues
    ids = m.queue_ids if hasattr(m, "queue_ids") else m.rgb_queue_ids
    per_video = 3 if name == "vclr" else 1
    assert sorted(ids[ids >= 0].tolist()) == sorted([7, 3, 9, 1] * per_video)
    m._batch_ids = torch.tensor([3, 5])
    mask = m.queue_mask("queue" if hasattr(m, "queue_ids") else "rgb_queue")
    assert mask.shape == (2, len(ids)) and mask[0].sum() == per_video and mask[1].sum() == 0
    m._batch_ids = None
    assert m.queue_mask("queue" if hasattr(m, "queue_ids") else "rgb_queue") is None
