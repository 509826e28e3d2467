"""MSCL: MoDist's clip-level terms plus rotated-flow (FRA) terms and frame-level LMCL.

Ni et al., "Motion Sensitive Contrastive Learning for Self-supervised Video Representation",
ECCV 2022, https://arxiv.org/abs/2208.06105. Loss as MSCL's released config
(docs/methods.md): seven clip-level InfoNCE terms (the rotated flow is a positive of the RGB
clip there) plus LMCL, where each RGB time step must pick the same-time flow step among the
clip's flow steps and all rotated-flow steps. Training clips come from MDS (motion
differential sampling, ``MDSPair``): the query from the video's high-motion-change starts
in the motion index, the key a bounded shift away, snapped to such a start.

``cfg.method.params`` keys (all optional, besides MoDist's):
    aug_flow_weights: [w_flow_aug, w_mx_aug] ([1, 1], MSCL's ``weight_aug_flow``).
    lmcl_weight: weight of LMCL (1.0); 0 switches it off.
    lmcl_temperature: tau of LMCL (``cfg.method.temperature``, 0.07 in MSCL).
    rotate_field: FRA also rotates the field spatially (False: vectors only, as MSCL).
    sampler: "mds" (default, MSCL) or "random" (two independent random clips, as MoDist).
    mds_max_shift: MDS key shift bound in frames (default clip_len * stride).
"""
from __future__ import annotations

from torch import Tensor, nn

from motionclr.datasets.samplers import MDSPair
from motionclr.datasets.transforms import FlowRotation
from motionclr.train.losses import (lmcl_loss, match_steps, mscl_global_terms,
                                    spatial_pool_steps)
from motionclr.train.methods.modist import MoDist


SAMPLERS = ("mds", "random")


class MSCL(MoDist):
    """MSCL (arXiv 2208.06105): MoDist + FRA rotated-flow terms + LMCL."""

    name = "mscl"

    def __init__(self, cfg):
        super().__init__(cfg)
        p = cfg.method.params
        self.clip_sampler = p.get("sampler", "mds")
        if self.clip_sampler not in SAMPLERS:
            raise ValueError(f"method.params.sampler={self.clip_sampler!r}; valid: {SAMPLERS}")
        self.needs_index = self.clip_sampler == "mds"  # MDS reads the motion index
        self.rotation = FlowRotation(rotate_field=bool(p.get("rotate_field", False)))
        self.aug_flow_weights = tuple(float(w) for w in p.get("aug_flow_weights", (1.0, 1.0)))
        self.lmcl_weight = float(p.get("lmcl_weight", 1.0))
        self.lmcl_temperature = float(p.get("lmcl_temperature", cfg.method.temperature))
        # Stand-in for MSCL's TPN neck level 0 (128 ch): a linear map of the last RGB conv
        # map's per-step vectors to the flow encoder's width. Our backbones expose only the
        # last map, so the RGB side has that map's (coarser) time resolution.
        self.lmcl_neck = nn.Linear(self.backbone.out_dim, self.flow_encoder.out_dim)

    def sampler(self):
        if self.clip_sampler == "random":
            return super().sampler()
        c, shift = self.cfg.clip, self.cfg.method.params.get("mds_max_shift")
        return MDSPair(c.clip_len, c.stride, max_shift=None if shift is None else int(shift))

    def embed_views(self, v1: dict, v2: dict, generator=None) -> dict:
        """MoDist's embeddings plus ``rot_q`` / ``rot_k`` / ``rot_q_out`` of the flow rotated
        by one FRA angle per sample, shared by both views."""
        emb = super().embed_views(v1, v2, generator)
        rot1, k = self.rotation(v1["flow"], generator)
        rot2, _ = self.rotation(v2["flow"], generator, k=k)
        emb["rot_q"], emb["rot_q_out"] = self.encode_flow_q(self.prepare_flow(rot1))
        emb["rot_k"] = self.encode_flow_k(self.prepare_flow(rot2))
        return emb

    def lmcl_steps(self, emb: dict) -> tuple[Tensor, Tensor, Tensor]:
        """Per-step features for LMCL, all (N, T, D) with T = min(T_rgb, T_flow).

        The finer side is average-pooled in time, never the coarser one repeated (repeated
        steps would be identical candidates and cap the loss at log 2)."""
        rgb = self.lmcl_neck(spatial_pool_steps(emb["rgb_map"]))  # (N, T_rgb, D)
        flow, rot = emb["flow_q_out"].steps, emb["rot_q_out"].steps  # (N, T_flow, D)
        t = min(rgb.shape[1], flow.shape[1])
        return match_steps(rgb, t), match_steps(flow, t), match_steps(rot, t)

    def loss_terms(self, emb: dict) -> dict[str, Tensor]:
        """Seven clip-level terms (``loss_rgb`` ... ``loss_mx_r_aug``) and ``loss_lmcl``."""
        terms = mscl_global_terms(
            rgb_q=emb["rgb_q"], rgb_k=emb["rgb_k"], flow_q=emb["flow_q"], flow_k=emb["flow_k"],
            rot_q=emb["rot_q"], rot_k=emb["rot_k"], rgb_queue=self.rgb_queue.clone(),
            flow_queue=self.flow_queue.clone(), temperature=self.cfg.method.temperature,
            aug_flow_weights=self.aug_flow_weights,
            rgb_queue_mask=self.queue_mask("rgb_queue"),
            flow_queue_mask=self.queue_mask("flow_queue"))
        if self.lmcl_weight:
            rgb, flow, rot = self.lmcl_steps(emb)
            terms["loss_lmcl"] = self.lmcl_weight * lmcl_loss(rgb, flow, rot,
                                                              self.lmcl_temperature)
        return terms
