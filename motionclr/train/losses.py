"""Contrastive losses of MoCo, MoDist, MSCL, VCLR and MCL as pure functions.

Every function takes explicit tensors (no modules, no process groups), so each term can be
unit-tested without a backbone. Embeddings are L2-normalised unless a docstring says
otherwise; a queue holds L2-normalised keys of earlier batches, shape (K, D). Keys are
targets: callers compute them with the momentum encoder under ``torch.no_grad()``; these
functions do not detach them, so online-key variants remain possible.

Sections: (1) generic MoCo InfoNCE, (2) MoDist cross-modal terms, (3) MSCL rotated-flow
terms and LMCL, (4) VCLR / SeCo-style terms (MCL reuses the inter/intra ones), (5) MCL
motion alignment. ``docs/methods.md`` gives the formulas, defaults and which details are
code facts and which are our choices.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------------------
# 1. Generic MoCo InfoNCE
# --------------------------------------------------------------------------------------


def nce_logits(query: Tensor, key: Tensor, queue: Tensor, temperature: float, *,
               queue_weights: Tensor | None = None,
               queue_mask: Tensor | None = None,
               extra_negatives: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """MoCo logits: the positive in column 0, then one column per queue entry.

    Args:
        query: (N, D) L2-normalised queries (online encoder).
        key: (N, D) L2-normalised positive keys, row i is the positive of query i.
        queue: (K, D) L2-normalised negatives (K may be 0).
        temperature: softmax temperature tau.
        queue_weights: optional (K,) multipliers of the negative similarities; MSCL scales
            each entry by ``0.99999 ** age`` (see :func:`queue_age_weights`).
        queue_mask: optional (N, K) bool, True where a queue entry must not act as a
            negative for that query (e.g. a stale copy of the query's own video).
        extra_negatives: optional (N, M, D) L2-normalised negatives of each query alone,
            appended after the queue (MSCL's FRA: the rotated flow of the same clip).

    Returns:
        logits: (N, 1 + K [+ M]) similarities divided by ``temperature``.
        labels: (N,) int64 zeros (the positive is column 0).
    """
    pos = (query * key).sum(dim=-1, keepdim=True)  # (N, 1)
    neg = query @ queue.detach().t()  # (N, K); the queue is a buffer, never trained
    if queue_weights is not None:
        neg = neg * queue_weights.to(neg.dtype)
    if queue_mask is not None:
        # -inf drops the entry from the softmax; the finite positive keeps the row valid
        neg = neg.masked_fill(queue_mask, float("-inf"))
    cols = [pos, neg]
    if extra_negatives is not None:
        cols.append(torch.einsum("nd,nmd->nm", query, extra_negatives))  # (N, M)
    logits = torch.cat(cols, dim=1) / temperature  # (N, 1 + K [+ M])
    labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return logits, labels


def info_nce(query: Tensor, key: Tensor, queue: Tensor, temperature: float, *,
             queue_weights: Tensor | None = None, queue_mask: Tensor | None = None,
             extra_negatives: Tensor | None = None,
             return_logits: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """MoCo InfoNCE: -log softmax of the positive against the queue, averaged over N.

    Args: as :func:`nce_logits`.
        return_logits: also return the (N, 1 + K) logits (for accuracy logging).

    Returns:
        Scalar loss, or ``(loss, logits)`` when ``return_logits``.
    """
    logits, labels = nce_logits(query, key, queue, temperature, queue_weights=queue_weights,
                                queue_mask=queue_mask, extra_negatives=extra_negatives)
    loss = F.cross_entropy(logits, labels)
    return (loss, logits) if return_logits else loss


def queue_age_weights(ages: Tensor, decay: float = 0.99999) -> Tensor:
    """MSCL's queue age weighting ``decay ** age``; ages (K,) in enqueue steps -> (K,)."""
    # float64: 0.99999 is not exact in float32 and the error grows with the power
    return torch.pow(torch.as_tensor(decay, dtype=torch.float64, device=ages.device),
                     ages.double()).float()


def same_video_mask(query_ids: Tensor, queue_ids: Tensor) -> Tensor:
    """(N,) and (K,) int video ids -> (N, K) bool, True where the queue holds the query's
    own video. Used as ``queue_mask`` when the queue is larger than the dataset
    (methods.md practical note 9). Empty queue slots should carry id -1."""
    return query_ids.view(-1, 1) == queue_ids.view(1, -1)


# --------------------------------------------------------------------------------------
# 2. MoDist: RGB <-> flow cross-modal terms (MSCL's re-implementation, methods.md 3.3)
# --------------------------------------------------------------------------------------


def cross_modal_nce(query: Tensor, key: Tensor, key_queue: Tensor, temperature: float,
                    **kwargs) -> Tensor:
    """Cross-modal InfoNCE: query of one modality, positive key of the other modality.

    The negatives come from the queue of the *key's* modality (MSCL ``same_kn=True``), so
    the positive cannot be told apart by modality alone. RGB->flow:
    ``cross_modal_nce(rgb_q, flow_k, flow_queue, t)``; flow->RGB:
    ``cross_modal_nce(flow_q, rgb_k, rgb_queue, t)``.

    Args:
        query: (N, D) L2-normalised queries of modality A.
        key: (N, D) L2-normalised keys of modality B (the other view's clip).
        key_queue: (K, D) queue of modality B.
        temperature: tau.
        **kwargs: ``queue_weights`` / ``queue_mask`` / ``extra_negatives`` /
            ``return_logits`` of :func:`info_nce`.

    Returns:
        Scalar loss (or ``(loss, logits)``).
    """
    return info_nce(query, key, key_queue, temperature, **kwargs)


def modist_terms(*, rgb_q: Tensor, rgb_k: Tensor, flow_q: Tensor, flow_k: Tensor,
                 rgb_queue: Tensor, flow_queue: Tensor, temperature: float = 0.07,
                 rgb_queue_mask: Tensor | None = None,
                 flow_queue_mask: Tensor | None = None,
                 mx_extra_negatives: Tensor | None = None) -> dict[str, Tensor]:
    """The four MoDist terms (all weight 1, summed by the caller).

    Args:
        rgb_q, flow_q: (N, D) online embeddings of view q.
        rgb_k, flow_k: (N, D) momentum embeddings of view k.
        rgb_queue, flow_queue: (K, D) queues per modality.
        temperature: tau (0.07 in MSCL's re-implementation).
        rgb_queue_mask, flow_queue_mask: optional (N, K) bool masks (:func:`same_video_mask`).
        mx_extra_negatives: optional (N, M, D) per-query negatives of the RGB->flow term
            (MSCL's FRA as the paper states it: the rotated key flow, shape (N, 1, D)).

    Returns:
        ``{"loss_rgb", "loss_flow", "loss_mx" (RGB->flow), "loss_mx_r" (flow->RGB)}``,
        scalar tensors named as in MSCL's code.
    """
    t = temperature
    return {
        "loss_rgb": info_nce(rgb_q, rgb_k, rgb_queue, t, queue_mask=rgb_queue_mask),
        "loss_flow": info_nce(flow_q, flow_k, flow_queue, t, queue_mask=flow_queue_mask),
        "loss_mx": cross_modal_nce(rgb_q, flow_k, flow_queue, t, queue_mask=flow_queue_mask,
                                   extra_negatives=mx_extra_negatives),
        "loss_mx_r": cross_modal_nce(flow_q, rgb_k, rgb_queue, t, queue_mask=rgb_queue_mask),
    }


# --------------------------------------------------------------------------------------
# 3. MSCL: rotated-flow (FRA) global terms and LMCL (methods.md 1.3)
# --------------------------------------------------------------------------------------


def mscl_global_terms(*, rgb_q: Tensor, rgb_k: Tensor, flow_q: Tensor, flow_k: Tensor,
                      rot_q: Tensor, rot_k: Tensor, rgb_queue: Tensor, flow_queue: Tensor,
                      temperature: float = 0.07,
                      aug_flow_weights: tuple[float, float] = (1.0, 1.0),
                      rgb_queue_mask: Tensor | None = None,
                      flow_queue_mask: Tensor | None = None) -> dict[str, Tensor]:
    """MSCL's seven clip-level terms as its released model code names them: the MoDist four
    plus three on a second flow pair (``fra=release`` / ``release_pipeline``).

    ``rot_q`` / ``rot_k`` embed the second flow pair with the flow encoder: with
    ``fra=release`` the FRA-rotated flow of each view (the same angle in both views); with
    ``fra=release_pipeline`` what MSCL's data pipeline actually feeds (docs/methods.md).
    These keys are never enqueued.

    Args:
        rgb_q, flow_q, rot_q: (N, D) online embeddings of view q.
        rgb_k, flow_k, rot_k: (N, D) momentum embeddings of view k.
        rgb_queue, flow_queue: (K, D).
        temperature: tau, 0.07.
        aug_flow_weights: MSCL's ``weight_aug_flow``: [0] scales ``loss_flow_aug``
            (rot q vs rot k); [1] scales ``loss_mx_aug`` / ``loss_mx_r_aug``, where the
            second flow is a *positive* of the RGB clip (the paper instead calls the rotated
            flow a negative: ``fra=paper``). A zero weight omits the term.
        rgb_queue_mask, flow_queue_mask: optional (N, K) bool masks.

    Returns:
        Dict of scalar terms: ``loss_rgb, loss_flow, loss_mx, loss_mx_r`` and, when their
        weights are non-zero, ``loss_flow_aug, loss_mx_aug, loss_mx_r_aug``.
    """
    t = temperature
    terms = modist_terms(rgb_q=rgb_q, rgb_k=rgb_k, flow_q=flow_q, flow_k=flow_k,
                         rgb_queue=rgb_queue, flow_queue=flow_queue, temperature=t,
                         rgb_queue_mask=rgb_queue_mask, flow_queue_mask=flow_queue_mask)
    w_flow, w_mx = aug_flow_weights
    if w_flow:
        terms["loss_flow_aug"] = w_flow * info_nce(rot_q, rot_k, flow_queue, t,
                                                   queue_mask=flow_queue_mask)
    if w_mx:
        terms["loss_mx_aug"] = w_mx * cross_modal_nce(rgb_q, rot_k, flow_queue, t,
                                                      queue_mask=flow_queue_mask)
        terms["loss_mx_r_aug"] = w_mx * cross_modal_nce(rot_q, rgb_k, rgb_queue, t,
                                                        queue_mask=rgb_queue_mask)
    return terms


def spatial_pool_steps(feature_map: Tensor) -> Tensor:
    """(N, C, T, H, W) -> (N, T, C): one vector per time step (mean over space only)."""
    return feature_map.mean(dim=(3, 4)).transpose(1, 2)


def match_steps(steps: Tensor, num_steps: int) -> Tensor:
    """Average-pool (N, T, D) along time to (N, num_steps, D); identity when T matches.

    Use it when the RGB level fed to LMCL has a different T than the flow encoder."""
    if steps.shape[1] == num_steps:
        return steps
    return F.adaptive_avg_pool1d(steps.transpose(1, 2), num_steps).transpose(1, 2)


def lmcl_logits(rgb_steps: Tensor, flow_steps: Tensor, rot_steps: Tensor | None = None,
                temperature: float = 0.07, *,
                normalize: bool = True) -> tuple[Tensor, Tensor]:
    """LMCL frame-level logits: each RGB time step against all flow steps of its own clip.

    Candidates for RGB step t of clip n are the T flow steps of clip n (positive: step t)
    followed, when given, by T extra steps, all negatives: the FRA-rotated flow of clip n
    (the "motion-shuffled" samples; MSCL ``fra=paper`` / ``release``) or, as MSCL's released
    pipeline feeds it, the key clip's unrotated flow (``release_pipeline``). No queue.

    Args:
        rgb_steps: (N, T, D) per-step RGB features (online; MSCL: neck level 0, 128-d,
            spatially pooled, no projection).
        flow_steps: (N, T, D) per-step features of the original flow (online).
        rot_steps: optional (N, T, D) per-step features of the extra flow (online).
        temperature: tau, 0.07.
        normalize: L2-normalise all inputs along D first (MSCL does).

    Returns:
        logits: (N, T, C) with C = 2T (T without ``rot_steps``).
        labels: (N, T) int64, ``labels[n, t] = t``.
    """
    n, t, _ = rgb_steps.shape
    if flow_steps.shape[1] != t or (rot_steps is not None and rot_steps.shape[1] != t):
        raise ValueError(f"time steps differ: rgb {t}, flow {flow_steps.shape[1]}"
                         + ("" if rot_steps is None else f", rotated {rot_steps.shape[1]}")
                         + "; use match_steps()")
    cand = flow_steps if rot_steps is None else torch.cat([flow_steps, rot_steps], dim=1)
    if normalize:
        rgb_steps, cand = F.normalize(rgb_steps, dim=-1), F.normalize(cand, dim=-1)
    logits = torch.einsum("ntd,ncd->ntc", rgb_steps, cand) / temperature  # (N, T, C)
    labels = torch.arange(t, device=rgb_steps.device).expand(n, t)
    return logits, labels


def lmcl_loss(rgb_steps: Tensor, flow_steps: Tensor, rot_steps: Tensor | None = None,
              temperature: float = 0.07, *, normalize: bool = True) -> Tensor:
    """LMCL cross-entropy averaged over all N*T RGB steps; arguments as :func:`lmcl_logits`.

    Beware (methods.md note 8): a backbone with zero temporal padding can solve this from
    step position alone; compare against a time-shuffled control before trusting it.
    """
    logits, labels = lmcl_logits(rgb_steps, flow_steps, rot_steps, temperature,
                                 normalize=normalize)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


# --------------------------------------------------------------------------------------
# 4. VCLR (and the SeCo-style inter/intra terms MCL shares) (methods.md 2.4, 4.2)
# --------------------------------------------------------------------------------------


def multi_positive_nce(query: Tensor, keys: Tensor, queue: Tensor, temperature: float, *,
                       queue_mask: Tensor | None = None) -> Tensor:
    """L_inter: each of P keys is the positive of the query in its own row.

    Args:
        query: (N, D) L2-normalised query.
        keys: (N, P, D) L2-normalised positives (VCLR: the re-augmented frame and the two
            other-segment frames; MCL: the re-augmented clip and two other clips).
        queue: (K, D) shared negatives.
        temperature: tau (0.1 in VCLR and MCL).
        queue_mask: optional (N, K) bool, shared by the P rows of a query.

    Returns:
        Scalar loss, the mean over the N*P rows.
    """
    n, p, d = keys.shape
    q = query.unsqueeze(1).expand(n, p, d).reshape(n * p, d)
    mask = None if queue_mask is None else queue_mask.repeat_interleave(p, dim=0)
    return info_nce(q, keys.reshape(n * p, d), queue, temperature, queue_mask=mask)


def intra_nce(query: Tensor, positive: Tensor, negatives: Tensor,
              temperature: float) -> Tensor:
    """L_intra: a 2-way softmax (positive vs one negative) for every negative.

    Args:
        query: (N, D) L2-normalised.
        positive: (N, D) the same frame/clip with another augmentation.
        negatives: (N, M, D) other frames/clips of the same video.
        temperature: tau (0.1).

    Returns:
        Scalar loss, the mean over the N*M two-way problems (log 2 when the positive and the
        negatives are equally similar).
    """
    pos = (query * positive).sum(dim=-1, keepdim=True)  # (N, 1)
    neg = torch.einsum("nd,nmd->nm", query, negatives)  # (N, M)
    logits = torch.stack([pos.expand_as(neg), neg], dim=-1) / temperature  # (N, M, 2)
    labels = torch.zeros(logits.shape[0] * logits.shape[1], dtype=torch.long,
                         device=query.device)
    return F.cross_entropy(logits.reshape(-1, 2), labels)


def segment_consensus(frame_features: Tensor) -> Tensor:
    """TSN segmental consensus: (N, S, C) per-segment features -> (N, C) mean."""
    return frame_features.mean(dim=1)


def segment_nce(query_frames: Tensor, key_frames: Tensor, queue: Tensor,
                temperature: float = 0.1, *, project_q=None, project_k=None,
                queue_mask: Tensor | None = None) -> Tensor:
    """VCLR's video-level L_segment on the segment consensus, with its own queue.

    Consensus is taken on the backbone features *before* the head, then projected
    (``fc_tsn``) and L2-normalised. Averaging makes the term order-invariant.

    Args:
        query_frames: (N, S, C) online backbone features of the query set (one per segment).
        key_frames: (N, S, C) momentum features of the key set (different frames).
        queue: (K, D) the segment queue (separate from the frame queue).
        temperature: tau, 0.1.
        project_q, project_k: callables (N, C) -> (N, D), e.g. the online and momentum
            ``fc_tsn``; identity when None. The caller runs ``project_k`` without grad.
        queue_mask: optional (N, K) bool.

    Returns:
        Scalar loss.
    """
    q, k = segment_consensus(query_frames), segment_consensus(key_frames)
    if project_q is not None:
        q = project_q(q)
    if project_k is not None:
        k = project_k(k)
    return info_nce(F.normalize(q, dim=-1), F.normalize(k, dim=-1), queue, temperature,
                    queue_mask=queue_mask)


def valid_shuffles(num_segments: int) -> list[tuple[int, ...]]:
    """Permutations of ``range(S)`` that are neither the identity nor its reversal."""
    ident = tuple(range(num_segments))
    return [p for p in itertools.permutations(ident) if p not in (ident, ident[::-1])]


def sample_order_targets(batch_size: int, num_segments: int = 3, *, p_shuffle: float = 0.5,
                         generator: torch.Generator | None = None,
                         device: torch.device | str | None = None
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """Draw VCLR's order task: shuffle the query set and/or the key set, each with p.

    Shuffling the per-frame embeddings of a 2D backbone is the same as shuffling the frames
    (each frame is encoded alone), so the method can do it after encoding.

    Args:
        batch_size: N.
        num_segments: S (3); must be >= 3 for a valid shuffle to exist.
        p_shuffle: probability of shuffling each set independently.
        generator: optional CPU generator for reproducibility.
        device: where the returned tensors live.

    Returns:
        perm_q, perm_k: (N, S) int64 orders to apply with :func:`permute_segments`.
        labels: (N,) int64 in {0..3}: ``q_shuffled + 2 * k_shuffled`` (codes 00, 10, 01, 11).
    """
    shuffles = torch.tensor(valid_shuffles(num_segments), dtype=torch.long)
    if len(shuffles) == 0:
        raise ValueError(f"no valid shuffle of {num_segments} segments; need >= 3")
    ident = torch.arange(num_segments).expand(batch_size, num_segments)
    perms, flags = [], []
    for _ in range(2):  # query set, key set
        flag = torch.rand(batch_size, generator=generator) < p_shuffle
        pick = shuffles[torch.randint(len(shuffles), (batch_size,), generator=generator)]
        perms.append(torch.where(flag.unsqueeze(1), pick, ident))
        flags.append(flag.long())
    labels = flags[0] + 2 * flags[1]
    return perms[0].to(device), perms[1].to(device), labels.to(device)


def permute_segments(x: Tensor, perm: Tensor) -> Tensor:
    """Reorder (N, S, ...) along S by per-sample orders perm (N, S)."""
    idx = perm.view(*perm.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)


def order_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Order regularisation: cross-entropy of the order head's logits (N, C) vs (N,)."""
    return F.cross_entropy(logits, labels)


# --------------------------------------------------------------------------------------
# 5. MCL motion alignment (L_MAL, methods.md 4.2)
# --------------------------------------------------------------------------------------


def gradient_saliency(score: Tensor, feature_map: Tensor, *, multiply_by: str = "gradient",
                      normalize: bool = False, create_graph: bool = True) -> Tensor:
    """Grad-CAM-style saliency of ``score`` on a late conv map, differentiable in turn.

    Channel weights are the gradients averaged over space, separately per time step
    (MCL pools the gradient to (T, 1, 1)). Saliency = ReLU(sum_c weight * X), where X is
    the gradient itself (MCL's code, the default) or the activation (classic Grad-CAM).
    With ``create_graph=True`` the result stays in the graph, so a loss on it
    backpropagates through the gradient (second order) into the network.

    Per-sample gradients come from ``score.sum()``; samples interact only through
    batch-statistics layers after ``feature_map`` (as in MCL's code).

    Args:
        score: (N,) per-sample scalar, MCL: the *unscaled* positive logit q . k.
        feature_map: (N, C, T, H, W) the map ``score`` was computed from (requires grad).
        multiply_by: "gradient" (MCL code) or "activation" (Grad-CAM).
        normalize: divide each sample's map by its max (the alignment loss uses cosines
            only, so this changes nothing there; useful for visualisation).
        create_graph: keep the graph for second-order gradients.

    Returns:
        (N, T, H, W) non-negative saliency.
    """
    (grad,) = torch.autograd.grad(score.sum(), feature_map, create_graph=create_graph)
    weights = grad.mean(dim=(3, 4), keepdim=True)  # (N, C, T, 1, 1)
    if multiply_by == "gradient":
        other = grad
    elif multiply_by == "activation":
        other = feature_map
    else:
        raise ValueError(f"multiply_by must be 'gradient' or 'activation', got {multiply_by!r}")
    sal = F.relu((weights * other).sum(dim=1))  # (N, T, H, W)
    if normalize:
        sal = sal / sal.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return sal


@torch.no_grad()
def mcl_motion_target(flow: Tensor, size: tuple[int, int, int]) -> Tensor:
    """MCL's motion-boundary target map from a clip's (cropped, flipped) flow.

    Per flow component: 3x3 Prewitt x/y derivatives of every frame, summed over each
    temporal chunk, then the magnitude, block-averaged to (H', W'); u and v are summed.
    Borders: MCL's code (``sts/motion_sts.py``) filters with scipy ``ndimage.convolve`` at
    its defaults, mode "reflect" (``d c b a | a b c d``); for a 3x3 kernel the one padded
    pixel is the edge pixel itself, i.e. replicate padding, as here (tested against scipy).
    scipy's true convolution flips the kernel, which only flips the derivative's sign.

    Args:
        flow: (N, 2, T, H, W) flow (u, v) in pixels.
        size: (T', H', W') output grid, e.g. (4, 7, 7) for 16 flows at 224^2.

    Returns:
        (N, T', H', W') non-negative motion map (no gradient).
    """
    n, c, t, h, w = flow.shape
    k = torch.tensor([[-1.0, 0.0, 1.0]] * 3, dtype=flow.dtype, device=flow.device)
    kernels = torch.stack([k, k.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    frames = F.pad(flow.reshape(n * c * t, 1, h, w), (1, 1, 1, 1), mode="replicate")
    deriv = F.conv2d(frames, kernels).view(n, c, t, 2, h, w)
    # sum over each chunk = chunk mean * chunk length (exact when T' divides T)
    deriv = deriv.permute(0, 1, 3, 2, 4, 5).reshape(n, c * 2, t, h, w)
    deriv = F.adaptive_avg_pool3d(deriv, (size[0], h, w)) * (t / size[0])
    deriv = deriv.view(n, c, 2, size[0], h, w)
    mag = deriv.pow(2).sum(dim=2).sqrt()  # (N, 2, T', H, W): per-component magnitude
    mag = F.adaptive_avg_pool3d(mag, size)  # block average in space
    return mag.sum(dim=1)


def resize_motion_map(motion: Tensor, size: tuple[int, int, int], *,
                      temporal_reduce: str = "sum") -> Tensor:
    """Bring a motion map (N, T, H, W) to the saliency grid (T', H', W').

    Space is block-averaged; time is summed over chunks (MCL sums the flows of a chunk)
    or averaged (``temporal_reduce="mean"``). The choice matters only for the softmax
    weights of the spatio-temporal term, because cosines ignore scale.
    """
    out = F.adaptive_avg_pool3d(motion.unsqueeze(1), size).squeeze(1)
    if temporal_reduce == "sum":
        out = out * (motion.shape[1] / size[0])
    elif temporal_reduce != "mean":
        raise ValueError(f"temporal_reduce must be 'sum' or 'mean', got {temporal_reduce!r}")
    return out


def motion_alignment_loss(saliency: Tensor, motion: Tensor, *, st_temperature: float = 1.0,
                          temporal_reduce: str = "sum", eps: float = 1e-8,
                          return_terms: bool = False) -> Tensor | tuple[Tensor, dict]:
    """MCL's L_MAL = (1 - s_st) + (1 - s_t) + (1 - s_s), averaged over the batch.

    - s_st: per time step, cosine of the flattened H x W maps, averaged with weights
      softmax_t(motion total at t / st_temperature);
    - s_t: cosine of the (T,) vectors of per-step totals;
    - s_s: cosine of the time-averaged H x W maps.

    Args:
        saliency: (N, T, H, W) from :func:`gradient_saliency` (carries the graph).
        motion: (N, T', H', W') target, resized to the saliency grid when it differs
            (:func:`resize_motion_map`). Treated as a constant.
        st_temperature: temperature of the per-step softmax weights (1.0 = MCL code). The
            weights depend on the target's scale (flow units, chunk sum vs mean).
        temporal_reduce: passed to :func:`resize_motion_map`.
        eps: cosine stabiliser (an all-zero saliency gives similarity 0, loss 3).
        return_terms: also return ``{"s_st", "s_t", "s_s"}`` (batch means, detached).

    Returns:
        Scalar loss in [0, 3] (or ``(loss, terms)``); 0 when saliency is proportional
        to the motion map.
    """
    motion = motion.detach().to(saliency.dtype)
    if motion.shape[1:] != saliency.shape[1:]:
        motion = resize_motion_map(motion, tuple(saliency.shape[1:]),
                                   temporal_reduce=temporal_reduce)
    sal_flat, mot_flat = saliency.flatten(2), motion.flatten(2)  # (N, T, HW)
    cos_t = F.cosine_similarity(sal_flat, mot_flat, dim=-1, eps=eps)  # (N, T)
    w = torch.softmax(mot_flat.sum(-1) / st_temperature, dim=1)  # (N, T)
    s_st = (w * cos_t).sum(dim=1)
    s_t = F.cosine_similarity(sal_flat.sum(-1), mot_flat.sum(-1), dim=-1, eps=eps)
    s_s = F.cosine_similarity(sal_flat.mean(1), mot_flat.mean(1), dim=-1, eps=eps)
    loss = ((1 - s_st) + (1 - s_t) + (1 - s_s)).mean()
    if not return_terms:
        return loss
    return loss, {"s_st": s_st.mean().detach(), "s_t": s_t.mean().detach(),
                  "s_s": s_s.mean().detach()}
