"""Each method as its paper and authors' code do it (issue 12): LMCL and L_MAL on maps with
several time steps, MCL's non-overlapping tubelets, FRA's three arrangements, MCL's order
head, MCL's derivative padding."""
import numpy as np
import pytest
import torch

from motionclr.config import Config
from motionclr.datasets import samplers as S
from motionclr.train.backbones import (build_backbone, conv_layers, layer_time_steps,
                                       pick_layer, stage_layers)
from motionclr.train.heads import OrderHead
from motionclr.train.losses import info_nce, mcl_motion_target
from motionclr.train.methods.mcl import MCL, capture, with_motion_focus
from motionclr.train.methods.mscl import MSCL


def _cfg(clip_len=8, backbone="small3d", flow=True, **params):
    """A tiny config; ``flow=False`` for methods without a flow encoder (MCL)."""
    cfg = Config()
    cfg.model.backbone, cfg.model.width, cfg.model.dim = backbone, 4, 16
    cfg.method.queue_size, cfg.method.temperature = 32, 0.2
    cfg.clip.crop, cfg.clip.clip_len, cfg.clip.stride = 32, clip_len, 1
    cfg.train.epochs, cfg.train.warmup_epochs = 10, 2
    slim = {"flow_encoder_args": {"widths": [4, 8], "blocks": [1, 1]}} if flow else {}
    cfg.method.params = {**slim, **params}
    return cfg


def _pair_batch(b=4, t=8, hw=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.randint(0, 256, (b, 2, 3, t, hw, hw), generator=g, dtype=torch.uint8),
            "flow": torch.randint(0, 256, (b, 2, 2, t, hw, hw), generator=g, dtype=torch.uint8),
            "index": torch.arange(b)}


# ------------------------------------------------------------------ 1. LMCL time steps

def test_lmcl_reads_a_map_with_four_steps_at_eight_frames():
    torch.manual_seed(0)
    model = MSCL(_cfg(clip_len=8))
    v1, v2 = model.views(_pair_batch(), torch.Generator().manual_seed(1))[:2]
    emb = model.embed_views(v1, v2, torch.Generator().manual_seed(2))
    rgb, flow, rot = model.lmcl_steps(emb)
    # small3d's last map has T = 2 at 8 frames; MSCL's LMCL map has T = 4
    assert rgb.shape[1] == flow.shape[1] == rot.shape[1] == 4


@pytest.mark.parametrize("backbone", ["r3d_18", "r2plus1d_18", "s3d", "small3d"])
@pytest.mark.parametrize("clip_len", [8, 16])
def test_default_layer_is_deepest_with_four_steps(backbone, clip_len):
    torch.set_num_threads(1)
    net = build_backbone(backbone, width=4)
    for cands in (stage_layers(net), conv_layers(net)):
        name, t = pick_layer(net, cands, clip_len, what="x", param="p")
        steps = layer_time_steps(net, cands, clip_len)
        assert t == steps[name] >= 4
        deeper = cands[cands.index(name) + 1:]
        assert all(steps[n] < 4 for n in deeper)


def test_too_few_steps_refused():
    with pytest.raises(ValueError, match="T=1"):
        MSCL(_cfg(clip_len=1))  # small3d's first stage: T = 1
    net = build_backbone("r3d_18")
    with pytest.raises(ValueError, match=r"'body.4' has T=1"):
        pick_layer(net, stage_layers(net), 8, "body.4", what="LMCL", param="lmcl_layer")


# ------------------------------------------------------------------ 2. MAL time steps

@pytest.mark.parametrize("make", [lambda: MCL(_cfg(flow=False)),
                                  lambda: with_motion_focus(MSCL)(_cfg())],
                         ids=["mcl", "mscl+mcl"])
def test_mal_saliency_map_has_four_steps(make):
    torch.manual_seed(0)
    model = make()
    with capture(model.sal_module) as maps:
        model.backbone(torch.randn(2, 3, 8, 32, 32))
    assert maps[0].shape[2] == 4  # small3d's last Conv3d: T' = 2 (temporal cosine ~ 1)


def test_mal_refuses_a_single_step_layer():
    with pytest.raises(ValueError, match="T=1"):
        MCL(_cfg(clip_len=4, flow=False, saliency_layer="body.9"))  # last conv, 4 frames


# ------------------------------------------------------------------ 3. MCL tubelets

@pytest.mark.parametrize("n,clip_len,stride", [(48, 8, 2), (64, 16, 2), (70, 16, 2), (40, 4, 1)])
@pytest.mark.parametrize("p_motion", [0.0, 1.0])
def test_mcl_triplets_never_overlap_the_query(n, clip_len, stride, p_motion):
    s = S.MCLTriplet(clip_len, stride, p_motion=p_motion)
    rng = np.random.default_rng(0)
    score = rng.random(S.max_start(n, clip_len, stride) + 1)
    for _ in range(300):
        q, a, b = s(n, rng, {"mcl_clip_score": score})
        assert q.max() < n and a.max() < n and b.max() < n
        for o in (a, b):
            assert q.max() < o.min() or o.max() < q.min(), (q, o)
        # the order label: query in the first half <=> before the others
        assert (q[0] < a[0]) == (q.max() < n // 2 <= a.min())


# ------------------------------------------------------------------ 4. FRA arrangements

def test_info_nce_extra_negatives():
    g = torch.Generator().manual_seed(0)
    q, k = (torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1)
            for _ in range(2))
    queue = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    extra = torch.nn.functional.normalize(torch.randn(3, 2, 8, generator=g), dim=-1)
    loss = info_nce(q, k, queue, 0.1, extra_negatives=extra)
    pos = (q * k).sum(1, keepdim=True)
    logits = torch.cat([pos, q @ queue.t(), torch.einsum("nd,nmd->nm", q, extra)], 1) / 0.1
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(
        logits, torch.zeros(3, dtype=torch.long)))


def test_fra_paper_is_the_default_and_uses_rotation_as_negative():
    torch.manual_seed(0)
    model = MSCL(_cfg())
    assert model.fra == "paper"
    _, logs = model.training_step(_pair_batch(), torch.Generator().manual_seed(1))
    assert {k for k in logs if k.startswith("loss_")} == {
        "loss_rgb", "loss_flow", "loss_mx", "loss_mx_r", "loss_lmcl"}
    # loss_mx has the rotated key flow of the same clip as an extra negative
    v1, v2 = model.views(_pair_batch(), torch.Generator().manual_seed(1))[:2]
    emb = model.embed_views(v1, v2, torch.Generator().manual_seed(2))
    terms = model.loss_terms(emb)
    plain = info_nce(emb["rgb_q"], emb["flow_k"], model.flow_queue, 0.2,
                     queue_mask=model.queue_mask("flow_queue"))
    with_rot = info_nce(emb["rgb_q"], emb["flow_k"], model.flow_queue, 0.2,
                        extra_negatives=emb["rot_k"][:, None])
    torch.testing.assert_close(terms["loss_mx"], with_rot)
    assert terms["loss_mx"] > plain


def test_fra_release_keeps_rotated_positives():
    model = MSCL(_cfg(fra="release"))
    _, logs = model.training_step(_pair_batch(), torch.Generator().manual_seed(1))
    assert {"loss_flow_aug", "loss_mx_aug", "loss_mx_r_aug"} <= set(logs)


def test_fra_release_pipeline_feeds_rotated_keys():
    """Every key flow is rotated; the 'aug' query flow is the other clip's flow with the
    query's crop; LMCL's extra candidates are that unrotated other-clip flow."""
    torch.manual_seed(0)
    model = MSCL(_cfg(fra="release_pipeline"))
    batch = _pair_batch()
    seen = []
    enc_k = model.encode_flow_k
    model.encode_flow_k = lambda f: (seen.append(f.clone()), enc_k(f))[1]
    _, logs = model.training_step(batch, torch.Generator().manual_seed(1))
    assert {"loss_flow_aug", "loss_mx_aug", "loss_mx_r_aug", "loss_lmcl"} <= set(logs)
    views = model.views(batch, torch.Generator().manual_seed(1))
    # both key flows are rotated: never equal to an unrotated, normalised view flow
    assert len(seen) == 2
    for f in seen:
        for v in views:
            assert not torch.allclose(f, model.prepare_flow(v["flow"]), atol=1e-3)


def test_fra_validation():
    with pytest.raises(ValueError, match="release_pipeline"):
        MSCL(_cfg(fra="paperr"))


# ------------------------------------------------------------------ 5. MCL order head

def test_order_head_mcl_form_normalises_items_then_concat():
    head = OrderHead(embed_dim=4, num_items=3, num_classes=2, normalize="mcl")
    x = torch.randn(5, 3, 4)
    scaled = x * torch.tensor([1.0, 10.0, 0.1])[None, :, None]  # per-item scale ignored
    torch.testing.assert_close(head(x), head(scaled))
    flat = torch.nn.functional.normalize(torch.nn.functional.normalize(x, dim=-1).flatten(1),
                                         dim=-1)
    torch.testing.assert_close(head(x), head.fc(flat))
    assert MCL(_cfg(flow=False)).order_head.normalize == "mcl"
    assert MCL(_cfg(flow=False, order_normalize="concat")).order_head.normalize == "concat"


# ------------------------------------------------------------------ 6. MCL's padding

def test_motion_target_matches_scipy_convolve_defaults():
    """MCL (sts/motion_sts.py) takes derivatives with scipy ndimage.convolve's default mode
    ('reflect'); for a 3x3 kernel that equals replicate padding."""
    from scipy import ndimage
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(1, 2, 4, 12, 12)).astype(np.float32)
    mx = np.array([[-1, 0, 1]] * 3, np.float64)
    my = mx.T
    ref = 0
    for c in range(2):
        sx = sum(ndimage.convolve(flow[0, c, t].astype(np.float64), mx) for t in range(4))
        sy = sum(ndimage.convolve(flow[0, c, t].astype(np.float64), my) for t in range(4))
        ref = ref + np.hypot(sx, sy)
    got = mcl_motion_target(torch.from_numpy(flow), (1, 12, 12))[0, 0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_release_pipeline_replays_the_views_crop_on_the_other_clip():
    """replay_flow(raw clip j, view i) is clip j's flow as view i's augmentation makes it:
    on view i's own clip it reproduces the view exactly (crop, flip, scale)."""
    torch.manual_seed(0)
    cfg = _cfg(fra="release_pipeline")
    cfg.data.flip = "independent"
    model = MSCL(cfg)
    batch = _pair_batch(b=6)
    v1, v2 = model.views(batch, torch.Generator().manual_seed(3))[:2]
    assert v1["aug_flip"].any() or v2["aug_flip"].any()
    torch.testing.assert_close(model.replay_flow(batch["flow"][:, 0], v1), v1["flow"])
    torch.testing.assert_close(model.replay_flow(batch["flow"][:, 1], v2), v2["flow"])
    other = model.replay_flow(batch["flow"][:, 1], v1)
    assert other.shape == v1["flow"].shape and not torch.allclose(other, v1["flow"])


@pytest.mark.parametrize("fra", ["paper", "release", "release_pipeline", "none"])
def test_every_fra_mode_trains_under_autocast(fra):
    torch.manual_seed(0)
    model = with_motion_focus(MSCL)(_cfg(fra=fra))
    batch = _pair_batch()
    batch["starts"] = torch.zeros(4, 2, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = model(batch, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss) and "loss_lmcl" in logs and "loss_mal" in logs
    loss.backward()
    assert model.lmcl_neck.weight.grad.abs().sum() > 0
