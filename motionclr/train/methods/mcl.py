"""MCL: motion-focused tubelets and gradient-map/flow alignment on top of SeCo-style terms.

Li et al., "Motion-Focused Contrastive Learning of Video Representations", ICCV 2021,
https://arxiv.org/abs/2201.04029. Loss as MCL's released code (docs/methods.md):
L = L_inter + L_intra + w_order * L_order + w_mal * L_MAL, tau = 0.1. Tubelets: temporal
from the motion index (``MCLTriplet``), spatial by the motion-focused crop (``GPUAugment``
with ``motion_crop``; the batch's ``motion_map`` or, without it, a map from the clip's flow).

``with_motion_focus(cls)`` adds the tubelets and L_MAL to a MoDist-family method (MoDist,
MSCL); docs/combinations.md describes the combined methods.

``cfg.method.params`` (``MCLParams`` / ``MotionFocusParams`` in methods/params.py; all
optional; configs/methods/mcl.yaml lists the defaults): ``p_motion``, ``p_ordered``,
``top_frac`` (``MCLTriplet``); ``motion_crop``; ``mal_weight``, ``mal_warmup_weight``,
``mal_warmup_epochs`` (L_MAL weight after / during the warm-up); ``order_weight`` (a number,
or "linear" = (epoch + 1) / epochs); ``order_normalize`` ("mcl": each item then the
concatenation, MCL's head); ``saliency_layer`` (a backbone Conv3d; "" = the deepest with
T' >= 4 for the clip length, as MCL's T' = 4; T' < 2 is refused: the temporal cosine of one
step is always 1); ``saliency_multiply``, ``st_temperature``, ``temporal_reduce``
(``gradient_saliency`` / ``motion_alignment_loss``); ``tubelet_sampler`` (combined methods:
"mcl" = query + one other clip, or "mds").
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionclr.datasets.samplers import MCLTriplet, MDSPair
from motionclr.datasets.transforms import AugmentCfg, GPUAugment
from motionclr.train.heads import OrderHead, ProjectionMLP, init_momentum_copy
from motionclr.train.losses import (gradient_saliency, intra_nce, mcl_motion_target,
                                    motion_alignment_loss, multi_positive_nce, order_loss)
from motionclr.train.backbones import build_backbone, conv_layers, pick_layer
from motionclr.train.methods.base import BaseMethod, capture
from motionclr.train.methods.params import MCLParams, MotionFocusParams, merge

# ----------------------------------------------------------------------------- helpers


def fp32(x: Tensor):
    """Autocast off on ``x``'s device (the saliency must not be computed in fp16/bf16)."""
    return torch.autocast(x.device.type, enabled=False)


def motion_augment(cfg, enabled: bool = True) -> GPUAugment:
    """The training augmentation with MCL's motion-focused crop switched on/off."""
    return GPUAugment(AugmentCfg.from_config(cfg, train=True, motion_crop=bool(enabled)))


def augment_views(method, batch: dict, order, generator=None) -> list[dict]:
    """Augment clips ``order`` (indices into V; repeats give fresh augmentations).

    Unlike ``BaseMethod.views`` this also hands each view its ``motion_map`` (B, V, g, g)
    when the batch has one, so the motion-focused crop uses the offline map, and it runs
    with autocast off (``gaussian_blur`` fails on fp16 conv output written into fp32)."""
    keys = [k for k in (*method.modalities, "motion_map") if k in batch]
    raw = [{k: batch[k][:, v] for k in keys} for v in order]
    with fp32(batch[keys[0]]):  # under autocast the blur's conv2d would return fp16
        return method.augment.views(raw, generator)


def saliency_layer(backbone: nn.Module, cfg, name: str = "") -> str:
    """The name of the Conv3d whose output is the map A: ``name``, or the deepest Conv3d
    with T' >= 4 steps for ``cfg.clip.clip_len`` (MCL: ``layer4.2.conv3``, T' = 4). Not a
    pooled stage output: a map average-pooled directly has dscore/dA equal at every
    position, so its saliency is flat (see the tests). T' < 2 is refused."""
    return pick_layer(backbone, conv_layers(backbone), cfg.clip.clip_len, name,
                      what="MCL's motion alignment (L_MAL)", param="saliency_layer")[0]


def check_saliency_layer(cfg, params) -> None:
    """``saliency_layer`` resolved on a throw-away backbone (validation before work)."""
    backbone = build_backbone(cfg.model.backbone, width=cfg.model.width)
    saliency_layer(backbone, cfg, params.saliency_layer)


def saliency_module(backbone: nn.Module, cfg, name: str = "") -> nn.Module:
    return dict(backbone.named_modules())[saliency_layer(backbone, cfg, name)]


def mal_params(cfg, p) -> dict:
    return {"weight": p.mal_weight, "warmup_weight": p.mal_warmup_weight,
            "warmup_epochs": (cfg.train.warmup_epochs if p.mal_warmup_epochs is None
                              else p.mal_warmup_epochs),
            "multiply": p.saliency_multiply, "st_temperature": p.st_temperature,
            "temporal_reduce": p.temporal_reduce}


def mal_loss(score: Tensor, fmap: Tensor, flow: Tensor, mp: dict) -> tuple[Tensor, dict]:
    """L_MAL of one batch, in float32 (call it with autocast off).

    Args:
        score: (N,) unscaled positive logit q . k (the graph reaches ``fmap``).
        fmap: (N, C, T', H', W') the saliency layer's output, float32 (a cast copy would
            not be on the path to ``score``: compute the forward pass in float32).
        flow: (N, 2, T, H, W) the query view's cropped/flipped flow (pixels).
    Returns:
        (scalar loss, {"mal_s_st", "mal_s_t", "mal_s_s"} detached).
    """
    sal = gradient_saliency(score, fmap, multiply_by=mp["multiply"], create_graph=True)
    motion = mcl_motion_target(flow.float(), tuple(sal.shape[1:]))  # (N, T', H', W')
    loss, s = motion_alignment_loss(sal, motion, st_temperature=mp["st_temperature"],
                                    temporal_reduce=mp["temporal_reduce"], return_terms=True)
    return loss, {f"mal_{k}": v for k, v in s.items()}


def mal_weight(mp: dict, epoch: int) -> float:
    """MCL: weight 2 during the warm-up epochs, 1 afterwards."""
    return mp["warmup_weight"] if epoch < mp["warmup_epochs"] else mp["weight"]


# ----------------------------------------------------------------------------- MCL


class MCL(BaseMethod):
    """MCL (arXiv 2201.04029): inter/intra/order on clip triplets + motion alignment."""

    name = "mcl"
    modalities = ("rgb", "flow")  # flow: the MAL target, and the crop's map without index
    needs_index = True
    num_views = 3

    Params = MCLParams

    @classmethod
    def check(cls, cfg, params) -> None:
        w = params.order_weight
        if isinstance(w, str) and w != "linear":
            raise ValueError(f"method.params.order_weight={w!r}; a number or 'linear'")
        check_saliency_layer(cfg, params)

    def __init__(self, cfg):
        super().__init__(cfg)
        p, dim, c = self.params, cfg.model.dim, self.backbone.out_dim
        w = p.order_weight
        if isinstance(w, str) and w != "linear":
            raise ValueError(f"method.params.order_weight={w!r}; a number or 'linear'")
        self.fc_intra = ProjectionMLP(in_dim=c, out_dim=dim)
        self.fc_order = ProjectionMLP(in_dim=c, out_dim=dim)
        self.momentum_fc_intra = copy.deepcopy(self.fc_intra)
        self.momentum_fc_order = copy.deepcopy(self.fc_order)
        init_momentum_copy(self.fc_intra, self.momentum_fc_intra)
        init_momentum_copy(self.fc_order, self.momentum_fc_order)
        self.order_head = OrderHead(embed_dim=dim, num_items=3, num_classes=2,
                                    normalize=p.order_normalize)
        self.make_queue("queue", dim, cfg.method.queue_size)
        self.augment = motion_augment(cfg, p.motion_crop)
        self.sal_module = saliency_module(self.backbone, cfg, p.saliency_layer)
        self.mal = mal_params(cfg, p)
        self.order_weight = p.order_weight
        self.epoch = 0  # set by the loop (set_epoch); drives the L_MAL and L_order weights

    def sampler(self):
        c, p = self.cfg.clip, self.params
        return MCLTriplet(c.clip_len, c.stride, p_motion=p.p_motion, p_ordered=p.p_ordered,
                          top_frac=p.top_frac)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def weights(self) -> tuple[float, float]:
        """(w_order, w_mal) at ``self.epoch``."""
        w = self.order_weight
        # MCL counts epochs from 1: (epoch + 1) / epochs reaches 1 in the last epoch
        w_order = (self.epoch + 1) / max(self.cfg.train.epochs, 1) if w == "linear" else float(w)
        return w_order, mal_weight(self.mal, self.epoch)

    @property
    def momentum_pairs(self):
        return super().momentum_pairs + [(self.fc_intra, self.momentum_fc_intra),
                                         (self.fc_order, self.momentum_fc_order)]

    @torch.no_grad()
    def encode_keys(self, views: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
        """Momentum inter / intra / order embeddings of V views, each (N, V, D)."""
        h = self.key_forward(self.momentum_backbone,
                             torch.cat([v["rgb"] for v in views]))  # (V*N, C)
        n = views[0]["rgb"].shape[0]

        def per_view(x):
            return x.view(len(views), n, -1).transpose(0, 1).float()
        return (per_view(F.normalize(self.momentum_projector(h), dim=1)),
                per_view(F.normalize(self.momentum_fc_intra(h), dim=1)),
                per_view(self.momentum_fc_order(h)))

    def training_step(self, batch: dict, generator=None) -> tuple[Tensor, dict]:
        # views: query (aug 1), query (aug 2), the two other clips; each its own tubelet crop
        q1, q2, oa, ob = augment_views(self, batch, [0, 0, 1, 2], generator)
        k_inter, k_intra, k_order = self.encode_keys([q2, oa, ob])
        tau, (w_order, w_mal) = self.cfg.method.temperature, self.weights()
        with fp32(q1["rgb"]), capture(self.sal_module) as maps:
            h = self.backbone(q1["rgb"].float())  # (N, C); the hook records A
            q = F.normalize(self.projector(h), dim=1)
            terms = {"loss_inter": multi_positive_nce(q, k_inter, self.queue.clone(), tau,
                                                      queue_mask=self.queue_mask("queue")),
                     "loss_intra": intra_nce(F.normalize(self.fc_intra(h), dim=1),
                                             k_intra[:, 0], k_intra[:, 1:], tau)}
            # order: was the query before the (sorted) other two? others' embeddings are
            # momentum outputs, i.e. detached as in MCL
            label = (batch["starts"][:, 0] < batch["starts"][:, 1]).long().to(q.device)
            items = torch.cat([self.fc_order(h)[:, None], k_order[:, 1:]], dim=1)
            logits = self.order_head(items)
            terms["loss_order"] = w_order * order_loss(logits, label)
            score = (q * k_inter[:, 0]).sum(dim=1)  # unscaled positive logit, same clip
            l_mal, s = mal_loss(score, maps[0], q1["flow"], self.mal)
            terms["loss_mal"] = w_mal * l_mal
        loss = self.total(terms)
        self.enqueue("queue", k_inter.reshape(-1, k_inter.shape[-1]))  # all 3 keys (MCL)
        logs = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, **s,
                "order_acc": (logits.argmax(1) == label).float().mean().detach(),
                "w_order": torch.tensor(w_order), "w_mal": torch.tensor(w_mal)}
        return loss, logs


# ----------------------------------------------------------------------------- mixin


class MCLPair(MCLTriplet):
    """MCL's motion-focused temporal sampling for pair methods: [query, one other clip]."""

    def __call__(self, n_frames, rng=None, info=None):
        return super().__call__(n_frames, rng, info)[:2]


class MotionFocusMixin:
    """Adds MCL's tubelets (sampler + motion crop) and L_MAL (``loss_mal``) to a MoDist-
    family method: it hooks ``encode_rgb_q`` (run in float32), ``embed_views`` and
    ``loss_terms``. The score is the RGB clip term's positive logit rgb_q . rgb_k."""

    needs_index = True

    @classmethod
    def check(cls, cfg, params) -> None:
        super().check(cfg, params)
        check_saliency_layer(cfg, params)

    def __init__(self, cfg):
        super().__init__(cfg)
        p = self.params
        self.needs_index = True  # the tubelet samplers read the motion index
        self.augment = motion_augment(cfg, p.motion_crop)
        self.sal_module = saliency_module(self.backbone, cfg, p.saliency_layer)
        self.mal, self.epoch = mal_params(cfg, p), 0

    def sampler(self):
        c, p = self.cfg.clip, self.params
        if p.tubelet_sampler == "mds":
            return MDSPair(c.clip_len, c.stride, max_shift=getattr(p, "mds_max_shift", None))
        return MCLPair(c.clip_len, c.stride, p_motion=p.p_motion, top_frac=p.top_frac)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def views(self, batch, generator=None):
        n_views = batch[self.modalities[0]].shape[1]
        return augment_views(self, batch, range(n_views), generator)

    def encode_rgb_q(self, rgb):
        with fp32(rgb):
            return super().encode_rgb_q(rgb.float())

    def embed_views(self, v1, v2, generator=None):
        with capture(self.sal_module) as maps:
            emb = super().embed_views(v1, v2, generator)
        emb["mal_map"], emb["mal_flow"] = maps[0], v1["flow"]
        return emb

    def loss_terms(self, emb):
        terms = super().loss_terms(emb)
        w = mal_weight(self.mal, self.epoch)
        if w:
            with fp32(emb["rgb_q"]):
                score = (emb["rgb_q"] * emb["rgb_k"].float()).sum(dim=1)
                loss, _ = mal_loss(score, emb["mal_map"], emb["mal_flow"], self.mal)
            terms["loss_mal"] = w * loss
        return terms


def with_motion_focus(cls: type) -> type:
    """``cls`` (MoDist, MSCL) + MCL tubelets + L_MAL, named ``"<cls.name>+mcl"``."""
    params = merge(f"{cls.__name__}MCLParams", cls.Params, MotionFocusParams)
    return type(f"{cls.__name__}MCL", (MotionFocusMixin, cls),
                {"name": f"{cls.name}+mcl", "Params": params,
                 "__doc__": f"{cls.__name__} + MCL tubelets and "
                 "L_MAL (motionclr.train.methods.mcl.MotionFocusMixin)."})
