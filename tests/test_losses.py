"""Known-answer, shape and loss-goes-down tests for motionclr.train.losses (CPU, tiny)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from motionclr.train import losses as L


def _eye(n, d, offset=0):
    """n orthonormal rows e_offset .. e_offset+n-1 in R^d."""
    return torch.eye(d)[offset:offset + n].clone()


def _rand_unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def _descends(params, loss_fn, steps=30, lr=0.1):
    """Run a few Adam steps; return (first loss, last loss)."""
    opt = torch.optim.Adam(params, lr=lr)
    first = None
    for _ in range(steps):
        loss = loss_fn()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss_fn().item()


# ---------------------------------------------------------------- generic InfoNCE


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_info_nce_aligned_key_orthogonal_negatives(tau):
    q = _eye(2, 8)
    queue = _eye(4, 8, offset=4)
    loss = L.info_nce(q, q, queue, tau)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    # logits [1/tau, 0, 0, 0, 0] -> -log(e^{1/tau} / (e^{1/tau} + 4))
    assert loss.item() == pytest.approx(math.log(1 + 4 * math.exp(-1 / tau)), rel=1e-5, abs=1e-6)
    if tau == 0.07:
        assert loss.item() < 1e-5


def test_info_nce_key_equal_to_negatives_is_log_k_plus_1():
    k = _rand_unit(3, 16)
    queue = k[:1].expand(5, 16)  # every negative equals the first key
    q = k[:1].expand(3, 16)
    loss, logits = L.info_nce(q, k[:1].expand(3, 16), queue, 0.2, return_logits=True)
    assert logits.shape == (3, 6)
    assert loss.item() == pytest.approx(math.log(6), rel=1e-5)


def test_nce_logits_layout_and_labels():
    q, k, queue = _rand_unit(4, 8, seed=1), _rand_unit(4, 8, seed=2), _rand_unit(7, 8, seed=3)
    logits, labels = L.nce_logits(q, k, queue, 0.5)
    assert logits.shape == (4, 8) and labels.dtype == torch.long
    assert torch.equal(labels, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(logits[:, 0], (q * k).sum(1) / 0.5)
    torch.testing.assert_close(logits[:, 1:], q @ queue.t() / 0.5)


def test_queue_mask_and_weights():
    q = _eye(2, 8)
    queue = q[:1].expand(4, 8).clone()  # negatives identical to query 0's key
    full = L.info_nce(q[:1], q[:1], queue, 1.0)
    assert full.item() == pytest.approx(math.log(5), rel=1e-5)
    # masking two of the four equal negatives -> log(3); masking all -> 0
    mask = torch.tensor([[True, True, False, False]])
    assert L.info_nce(q[:1], q[:1], queue, 1.0, queue_mask=mask).item() == pytest.approx(
        math.log(3), rel=1e-5)
    assert L.info_nce(q[:1], q[:1], queue, 1.0,
                      queue_mask=torch.ones(1, 4, dtype=torch.bool)).item() == pytest.approx(0.0)
    # zero weights turn every negative logit into 0 -> log(1 + 4/e)
    w = torch.zeros(4)
    assert L.info_nce(q[:1], q[:1], queue, 1.0, queue_weights=w).item() == pytest.approx(
        math.log(1 + 4 / math.e), rel=1e-5)


def test_queue_age_weights_and_same_video_mask():
    w = L.queue_age_weights(torch.tensor([0, 1, 100000]), decay=0.99999)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.99999, 0.99999 ** 100000]))
    m = L.same_video_mask(torch.tensor([3, 5]), torch.tensor([5, -1, 3, 3]))
    assert torch.equal(m, torch.tensor([[False, False, True, True], [True, False, False, False]]))


def test_info_nce_loss_decreases():
    q = nn.Parameter(torch.randn(8, 16))
    k, queue = _rand_unit(8, 16, seed=4), _rand_unit(32, 16, seed=5)
    first, last = _descends([q], lambda: L.info_nce(F.normalize(q, dim=1), k, queue, 0.2))
    assert last < first * 0.5


# ---------------------------------------------------------------- MoDist / MSCL global


def _views(n=4, d=8, k=6):
    names = ["rgb_q", "rgb_k", "flow_q", "flow_k", "rot_q", "rot_k"]
    out = {nm: _rand_unit(n, d, seed=10 + i) for i, nm in enumerate(names)}
    out["rgb_queue"], out["flow_queue"] = _rand_unit(k, d, seed=20), _rand_unit(k, d, seed=21)
    return out


def test_cross_modal_uses_key_modality_queue():
    v = _views()
    got = L.cross_modal_nce(v["rgb_q"], v["flow_k"], v["flow_queue"], 0.07)
    torch.testing.assert_close(got, L.info_nce(v["rgb_q"], v["flow_k"], v["flow_queue"], 0.07))
    assert not torch.allclose(got, L.info_nce(v["rgb_q"], v["flow_k"], v["rgb_queue"], 0.07))


def test_modist_terms_match_definitions():
    v = _views()
    v.pop("rot_q"), v.pop("rot_k")
    terms = L.modist_terms(**v, temperature=0.1)
    assert set(terms) == {"loss_rgb", "loss_flow", "loss_mx", "loss_mx_r"}
    torch.testing.assert_close(terms["loss_mx_r"],
                               L.info_nce(v["flow_q"], v["rgb_k"], v["rgb_queue"], 0.1))
    torch.testing.assert_close(terms["loss_flow"],
                               L.info_nce(v["flow_q"], v["flow_k"], v["flow_queue"], 0.1))


def test_mscl_global_terms_weights():
    v = _views()
    terms = L.mscl_global_terms(**v)
    assert set(terms) == {"loss_rgb", "loss_flow", "loss_mx", "loss_mx_r", "loss_flow_aug",
                          "loss_mx_aug", "loss_mx_r_aug"}
    assert all(t.dim() == 0 for t in terms.values())
    # the rotated flow is a positive of the RGB query with flow-queue negatives
    torch.testing.assert_close(terms["loss_mx_aug"],
                               L.info_nce(v["rgb_q"], v["rot_k"], v["flow_queue"], 0.07))
    half = L.mscl_global_terms(**v, aug_flow_weights=(0.5, 0.0))
    assert set(half) == {"loss_rgb", "loss_flow", "loss_mx", "loss_mx_r", "loss_flow_aug"}
    torch.testing.assert_close(half["loss_flow_aug"], 0.5 * terms["loss_flow_aug"])


# ---------------------------------------------------------------- LMCL


def test_lmcl_known_answer_and_shapes():
    n, t, tau = 2, 4, 0.5
    flow = _eye(t, 3 * t).expand(n, t, 3 * t)  # step t -> e_t
    rot = _eye(t, 3 * t, offset=t).expand(n, t, 3 * t)  # orthogonal to all flow steps
    logits, labels = L.lmcl_logits(flow * 3.0, flow, rot, tau)  # scale: normalised away
    assert logits.shape == (n, t, 2 * t) and labels.shape == (n, t)
    assert torch.equal(labels[1], torch.arange(t))
    loss = L.lmcl_loss(flow, flow, rot, tau)
    assert loss.item() == pytest.approx(math.log(1 + (2 * t - 1) * math.exp(-1 / tau)), rel=1e-5)
    # without rotated negatives there are T candidates
    assert L.lmcl_logits(flow, flow, None, tau)[0].shape == (n, t, t)
    assert L.lmcl_loss(flow, flow, None, tau).item() == pytest.approx(
        math.log(1 + (t - 1) * math.exp(-1 / tau)), rel=1e-5)


def test_lmcl_positive_is_same_time_step():
    t = 4
    flow = _eye(t, 2 * t).unsqueeze(0)
    shifted = flow.roll(1, dims=1)  # RGB step t now matches flow step t-1
    assert L.lmcl_loss(shifted, flow, None, 0.1) > L.lmcl_loss(flow, flow, None, 0.1) + 5
    # a rotated flow identical to the RGB steps is a hard negative: loss = log 2 at tau->small
    assert L.lmcl_loss(flow, flow, flow, 0.01).item() == pytest.approx(math.log(2), rel=1e-4)


def test_lmcl_step_mismatch_and_match_steps():
    rgb, flow = torch.randn(2, 8, 6), torch.randn(2, 4, 6)
    with pytest.raises(ValueError, match="match_steps"):
        L.lmcl_loss(rgb, flow)
    pooled = L.match_steps(rgb, 4)
    torch.testing.assert_close(pooled, rgb.view(2, 4, 2, 6).mean(2))
    assert L.match_steps(flow, 4) is flow
    fmap = torch.randn(2, 6, 4, 3, 3)
    torch.testing.assert_close(L.spatial_pool_steps(fmap), fmap.mean((3, 4)).transpose(1, 2))


def test_lmcl_loss_decreases():
    rgb = nn.Parameter(torch.randn(3, 4, 16))
    flow, rot = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    first, last = _descends([rgb], lambda: L.lmcl_loss(rgb, flow, rot, 0.1))
    assert last < first * 0.5


# ---------------------------------------------------------------- VCLR / SeCo terms


def test_multi_positive_nce_is_mean_of_rows():
    q, keys, queue = _rand_unit(3, 8, seed=1), _rand_unit(3, 2, 8, seed=2), _rand_unit(5, 8)
    got = L.multi_positive_nce(q, keys, queue, 0.1)
    want = (L.info_nce(q, keys[:, 0], queue, 0.1) + L.info_nce(q, keys[:, 1], queue, 0.1)) / 2
    torch.testing.assert_close(got, want)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0] = True
    got_m = L.multi_positive_nce(q, keys, queue, 0.1, queue_mask=mask)
    want_m = sum(L.info_nce(q, keys[:, i], queue, 0.1, queue_mask=mask) for i in range(2)) / 2
    torch.testing.assert_close(got_m, want_m)


def test_intra_nce_known_answers():
    q = _eye(2, 6)
    assert L.intra_nce(q, q, q.unsqueeze(1).expand(2, 3, 6), 0.1).item() == pytest.approx(
        math.log(2), rel=1e-5)
    neg = _eye(2, 6, offset=2).unsqueeze(1)  # orthogonal negatives, M = 1
    assert L.intra_nce(q, q, neg, 0.5).item() == pytest.approx(
        math.log(1 + math.exp(-2)), rel=1e-5)


def test_intra_nce_loss_decreases():
    q = nn.Parameter(torch.randn(4, 8))
    pos, neg = _rand_unit(4, 8, seed=3), _rand_unit(4, 2, 8, seed=4)
    first, last = _descends([q], lambda: L.intra_nce(F.normalize(q, dim=1), pos, neg, 0.1))
    assert last < first * 0.5


def test_segment_nce_order_invariant_and_projection():
    qf, kf, queue = torch.randn(4, 3, 10), torch.randn(4, 3, 10), _rand_unit(6, 10)
    base = L.segment_nce(qf, kf, queue, 0.1)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(L.segment_nce(qf[:, perm], kf, queue, 0.1), base)
    want = L.info_nce(F.normalize(qf.mean(1), dim=1), F.normalize(kf.mean(1), dim=1), queue, 0.1)
    torch.testing.assert_close(base, want)
    proj = nn.Linear(10, 5)
    queue5 = _rand_unit(6, 5)
    with torch.no_grad():
        pk = proj(kf.mean(1))
    got = L.segment_nce(qf, kf, queue5, 0.1, project_q=proj, project_k=proj)
    torch.testing.assert_close(got, L.info_nce(F.normalize(proj(qf.mean(1)), dim=1),
                                               F.normalize(pk, dim=1), queue5, 0.1))


def test_order_targets_and_permutation():
    shuffles = L.valid_shuffles(3)
    assert len(shuffles) == 4 and (0, 1, 2) not in shuffles and (2, 1, 0) not in shuffles
    g = torch.Generator().manual_seed(0)
    pq, pk, labels = L.sample_order_targets(64, 3, generator=g)
    assert pq.shape == pk.shape == (64, 3) and labels.shape == (64,)
    ident = torch.arange(3)
    q_shuf = (pq != ident).any(1).long()
    k_shuf = (pk != ident).any(1).long()
    assert torch.equal(labels, q_shuf + 2 * k_shuf)
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for row in torch.cat([pq, pk]):
        assert tuple(row.tolist()) not in [(2, 1, 0)]
    assert L.sample_order_targets(5, 3, p_shuffle=0.0)[2].eq(0).all()
    assert L.sample_order_targets(5, 3, p_shuffle=1.0)[2].eq(3).all()
    with pytest.raises(ValueError):
        L.sample_order_targets(2, 2)
    x = torch.arange(6.0).view(1, 3, 2)
    torch.testing.assert_close(L.permute_segments(x, torch.tensor([[2, 0, 1]])),
                               torch.tensor([[[4.0, 5.0], [0.0, 1.0], [2.0, 3.0]]]))


def test_order_loss_decreases():
    logits = nn.Parameter(torch.zeros(8, 4))
    labels = torch.arange(8) % 4
    assert L.order_loss(logits, labels).item() == pytest.approx(math.log(4), rel=1e-6)
    first, last = _descends([logits], lambda: L.order_loss(logits, labels))
    assert last < first * 0.5


# ---------------------------------------------------------------- MCL motion alignment


def test_gradient_saliency_known_answer():
    g0 = torch.tensor([1.0, -2.0]).view(1, 2, 1, 1, 1) * torch.ones(1, 2, 1, 1, 2)
    g0[0, 0, 0, 0, 1] = 3.0  # channel 0: (1, 3), channel 1: (-2, -2)
    a = torch.randn(1, 2, 1, 1, 2, requires_grad=True)
    score = (a * g0).sum(dim=(1, 2, 3, 4))  # d score / dA = g0
    sal = L.gradient_saliency(score, a)
    # weights: mean over space = (2, -2); sum_c w * g = (2*1 + 4, 2*3 + 4) = (6, 10)
    torch.testing.assert_close(sal, torch.tensor([[[[6.0, 10.0]]]]))
    # Grad-CAM variant multiplies the activations instead
    sal_a = L.gradient_saliency((a * g0).sum(dim=(1, 2, 3, 4)), a, multiply_by="activation")
    want = F.relu((torch.tensor([2.0, -2.0]).view(1, 2, 1, 1, 1) * a).sum(1)).detach()
    torch.testing.assert_close(sal_a.detach(), want)
    normed = L.gradient_saliency((a * g0).sum(dim=(1, 2, 3, 4)), a, normalize=True)
    torch.testing.assert_close(normed, torch.tensor([[[[0.6, 1.0]]]]))


def test_gradient_saliency_weights_are_per_time_step():
    g = torch.tensor([[1.0, 3.0], [1.0, 1.0]]).view(1, 1, 2, 1, 2)  # (N, C, T, H, W)
    a = torch.zeros_like(g, requires_grad=True)
    sal = L.gradient_saliency((a * g).sum(dim=(1, 2, 3, 4)), a)
    # step 0: weight 2 -> (2, 6); step 1: weight 1 -> (1, 1) (not one weight over time)
    torch.testing.assert_close(sal, torch.tensor([[[[2.0, 6.0]], [[1.0, 1.0]]]]))


class _TinyNet(nn.Module):
    """Conv3d producing A, then a non-linear head (normalised), as in a real encoder."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4, 6)

    def forward(self, x):
        a = self.conv(x)  # (N, 4, T, H, W): the map the saliency is taken on
        q = F.normalize(self.fc(F.relu(a).mean(dim=(2, 3, 4))), dim=1)
        return a, q


_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", _DEVICES)
def test_alignment_second_order_gradient_reaches_conv(device):
    torch.manual_seed(0)
    net = _TinyNet().to(device)
    x, k = torch.randn(2, 2, 4, 6, 6, device=device), _rand_unit(2, 6, seed=7).to(device)
    motion = torch.rand(2, 4, 6, 6, device=device)
    a, q = net(x)
    sal = L.gradient_saliency((q * k).sum(1), a)
    assert sal.shape == (2, 4, 6, 6) and (sal >= 0).all() and sal.requires_grad
    loss, terms = L.motion_alignment_loss(sal, motion, return_terms=True)
    assert set(terms) == {"s_st", "s_t", "s_s"}
    assert net.conv.weight.grad is None
    loss.backward()
    for p in (net.conv.weight, net.fc.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_alignment_without_create_graph_is_detached():
    net = _TinyNet()
    a, q = net(torch.randn(1, 2, 2, 4, 4))
    sal = L.gradient_saliency((q * _rand_unit(1, 6)).sum(1), a, create_graph=False)
    assert not sal.requires_grad


def test_alignment_minimal_when_saliency_equals_motion():
    motion = torch.rand(3, 4, 7, 7) + 0.1
    assert L.motion_alignment_loss(motion, motion).item() == pytest.approx(0.0, abs=1e-5)
    assert L.motion_alignment_loss(5 * motion, motion).item() == pytest.approx(0.0, abs=1e-5)
    other = torch.rand(3, 4, 7, 7)
    assert L.motion_alignment_loss(other, motion).item() > 0.05
    # an all-zero saliency: every similarity 0, loss 3, finite gradient
    zero = torch.zeros(3, 4, 7, 7, requires_grad=True)
    loss = L.motion_alignment_loss(zero, motion)
    assert loss.item() == pytest.approx(3.0)
    loss.backward()
    assert torch.isfinite(zero.grad).all()


def test_alignment_terms_known_answer():
    sal = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, T=2, H=1, W=2)
    mot = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    loss, terms = L.motion_alignment_loss(sal, mot, return_terms=True)
    # per-step cos (1, 0), equal totals -> weights (.5, .5); totals (1,1)·(1,1): cos 1;
    # time-averaged maps (.5, .5) vs (1, 0): cos 1/sqrt(2)
    assert terms["s_st"].item() == pytest.approx(0.5)
    assert terms["s_t"].item() == pytest.approx(1.0)
    assert terms["s_s"].item() == pytest.approx(1 / math.sqrt(2))
    assert loss.item() == pytest.approx(0.5 + 1 - 1 / math.sqrt(2), rel=1e-5)


def test_motion_map_resized_to_saliency_grid():
    small = torch.rand(2, 4, 7, 7) + 0.1
    big = small.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(L.resize_motion_map(big, (4, 7, 7)), 2 * small)
    torch.testing.assert_close(L.resize_motion_map(big, (4, 7, 7), temporal_reduce="mean"), small)
    assert L.motion_alignment_loss(small, big).item() == pytest.approx(0.0, abs=1e-5)


def test_alignment_loss_decreases():
    raw = nn.Parameter(torch.randn(2, 4, 5, 5))
    motion = torch.rand(2, 4, 5, 5)
    first, last = _descends([raw], lambda: L.motion_alignment_loss(F.softplus(raw), motion))
    assert last < first * 0.5


def test_mcl_motion_target_known_answers():
    n, t, h, w = 1, 4, 8, 8
    ramp = torch.arange(w, dtype=torch.float32).expand(h, w)  # u = x: du/dx = 1 px/px
    flow = torch.zeros(n, 2, t, h, w)
    flow[:, 0] = ramp
    out = L.mcl_motion_target(flow, (2, h, w))
    assert out.shape == (n, 2, h, w) and not out.requires_grad
    # Prewitt x on a unit ramp: 3 rows x (x+1 - (x-1)) = 6 per frame, 2 frames per chunk
    torch.testing.assert_close(out[..., 1:-1], torch.full((n, 2, h, w - 2), 12.0))
    # a uniform translation has no motion boundary anywhere (replicate padding)
    const = torch.ones(n, 2, t, h, w) * 3.0
    assert L.mcl_motion_target(const, (2, 2, 2)).abs().max().item() == 0.0
    assert L.mcl_motion_target(flow, (4, 7, 7)).shape == (n, 4, 7, 7)
