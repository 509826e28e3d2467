"""MSCL: MoDist's clip-level terms plus flow-rotation (FRA) samples and frame-level LMCL.

Ni et al., "Motion Sensitive Contrastive Learning for Self-supervised Video Representation",
ECCV 2022, https://arxiv.org/abs/2208.06105. LMCL: each RGB time step must pick the
same-time flow step among the clip's flow steps and the extra candidates FRA provides.
Training clips come from MDS (motion differential sampling, ``MDSPair``): the query from
the video's high-motion-change starts in the motion index, the key a bounded shift away,
snapped to such a start.

FRA has three arrangements (``params.fra``; docs/methods.md gives the evidence):

- ``paper`` (default): as the abstract says, the rotated flow is an extra *negative*: the
  momentum-encoded rotated key flow joins the negatives of the RGB->flow term
  (``loss_mx``), and the rotated flow's steps are LMCL's extra negatives.
- ``release``: the names in MSCL's released model code: the rotated flow of each view forms
  a second flow pair whose key is a *positive* of the RGB clip (``loss_flow_aug``,
  ``loss_mx_aug``, ``loss_mx_r_aug``).
- ``release_pipeline``: what MSCL's released data pipeline feeds that code: both key flows
  are rotated (the first is the query clip's flow under the key's crop), the second query
  flow is the *key clip's* unrotated flow under the query's crop, and LMCL's extra
  candidates are that unrotated key-clip flow.
- ``none``: no rotation (MoDist's four terms plus LMCL within the clip's own flow).

``cfg.method.params``: ``MSCLParams`` (methods/params.py), besides MoDist's: ``fra``,
``aug_flow_weights`` (release modes: [w_flow_aug, w_mx_aug], default [1, 1]),
``lmcl_weight`` (0 drops LMCL), ``lmcl_temperature`` (default ``method.temperature``),
``lmcl_layer`` (the RGB layer LMCL reads; "" = the deepest stage with T >= 4 for the clip
length, as MSCL's T = 4 map; T < 2 is refused), ``rotate_field``, ``sampler`` ("mds" |
"random"), ``mds_max_shift``.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from motionclr.datasets.samplers import MDSPair
from motionclr.datasets.transforms import (FlowRotation, apply_boxes, hflip, normalize,
                                           to_float)
from motionclr.train.backbones import build_backbone, layer_shapes, pick_layer, stage_layers
from motionclr.train.losses import (lmcl_loss, match_steps, modist_terms, mscl_global_terms,
                                    spatial_pool_steps)
from motionclr.train.methods.base import capture
from motionclr.train.methods.modist import MoDist
from motionclr.train.methods.params import MSCLParams


def lmcl_layer(backbone: nn.Module, cfg, name: str = "") -> tuple[str, int]:
    """(layer name, T) of the RGB map LMCL reads (see ``pick_layer``)."""
    return pick_layer(backbone, stage_layers(backbone), cfg.clip.clip_len, name,
                      what="MSCL's LMCL", param="lmcl_layer")


class MSCL(MoDist):
    """MSCL (arXiv 2208.06105): MoDist + FRA samples + LMCL."""

    name = "mscl"
    Params = MSCLParams

    @classmethod
    def check(cls, cfg, params) -> None:
        super().check(cfg, params)
        cls._check_fra(params)
        if params.lmcl_weight:
            lmcl_layer(build_backbone(cfg.model.backbone, width=cfg.model.width), cfg,
                       params.lmcl_layer)

    def __init__(self, cfg):
        super().__init__(cfg)
        p = self.params
        self._check_fra(p)
        self.fra = p.fra
        self.clip_sampler = p.sampler
        self.needs_index = self.clip_sampler == "mds"  # MDS reads the motion index
        self.rotation = FlowRotation(rotate_field=p.rotate_field)
        self.aug_flow_weights = tuple(float(w) for w in (p.aug_flow_weights or (1.0, 1.0)))
        self.lmcl_weight = p.lmcl_weight
        self.lmcl_temperature = (cfg.method.temperature if p.lmcl_temperature is None
                                 else p.lmcl_temperature)
        if self.lmcl_weight:
            # MSCL's LMCL reads TPN neck level 0 (128 ch, T = 4 at 8 frames on r3d_18,
            # i.e. layer2); here a linear map of the chosen stage's per-step vectors to
            # the flow encoder's width stands in for the neck.
            self.lmcl_layer, _ = lmcl_layer(self.backbone, cfg, p.lmcl_layer)
            channels = layer_shapes(self.backbone, [self.lmcl_layer], cfg.clip.clip_len)
            self.lmcl_module = dict(self.backbone.named_modules())[self.lmcl_layer]
            self.lmcl_neck = nn.Linear(channels[self.lmcl_layer][0], self.flow_encoder.out_dim)

    @staticmethod
    def _check_fra(p) -> None:
        if p.fra in ("paper", "none") and p.aug_flow_weights is not None:
            raise ValueError(f"method.params.aug_flow_weights weighs the rotated-flow positive"
                             f" terms of fra=release|release_pipeline; fra={p.fra!r} has "
                             "none (set method.params.fra=release to use them)")
        if p.aug_flow_weights is not None and len(p.aug_flow_weights) != 2:
            raise ValueError("method.params.aug_flow_weights: two numbers [w_flow_aug, "
                             f"w_mx_aug], got {p.aug_flow_weights!r}")

    def sampler(self):
        if self.clip_sampler == "random":
            return super().sampler()
        c = self.cfg.clip
        return MDSPair(c.clip_len, c.stride, max_shift=self.params.mds_max_shift)

    # ---- the released pipeline's flows: one clip's flow under the other view's crop ----
    def training_step(self, batch: dict, generator=None):
        # release_pipeline replays each view's crop/flip on the other clip's raw flow
        self._raw_flow = batch.get("flow") if self.fra == "release_pipeline" else None
        try:
            return super().training_step(batch, generator)
        finally:
            self._raw_flow = None

    def replay_flow(self, raw: Tensor, view: dict) -> Tensor:
        """uint8 flow (N, 2, T, H, W) of any clip -> float flow under ``view``'s crop and
        flip (``aug_box`` / ``aug_flip``), as the augmentation would have produced it."""
        c = self.augment.cfg
        with torch.autocast(raw.device.type, enabled=False):
            x = to_float({"flow": raw}, c.bound)
            x = apply_boxes(x, view["aug_box"], c.size)
            if c.train:
                x = hflip(x, view["aug_flip"])
            return normalize(x, c.mean, c.std, c.flow_scale)["flow"]

    # ---- embeddings ---------------------------------------------------------------------
    def embed_views(self, v1: dict, v2: dict, generator=None) -> dict:
        """RGB q/k, the flow pair and FRA's second flow pair, per ``self.fra``.

        Returns ``rgb_q, rgb_k, flow_q, flow_k`` (N, dim), ``rgb_map``, ``flow_q_out``,
        ``lmcl_map`` (when LMCL is on) and, unless ``fra=none``: ``rot_q, rot_k`` (N, dim)
        and ``rot_q_out`` (the second pair; rotated flows except release_pipeline's query).
        """
        emb = {}
        hook = capture(self.lmcl_module) if self.lmcl_weight else nullcontext([])
        with hook as maps:
            emb["rgb_q"], emb["rgb_map"] = self.encode_rgb_q(v1["rgb"])
        if maps:
            emb["lmcl_map"] = maps[0]
        emb["rgb_k"] = self.encode_k(v2["rgb"])
        f1, f2 = v1["flow"], v2["flow"]
        if self.fra == "release_pipeline":
            raw = self._raw_flow
            if raw is None:
                raise ValueError("fra=release_pipeline needs the raw batch: call training_step")
            # what MSCL's pipeline feeds: q = [flow(clip 1), flow(clip 2)] under crop 1,
            # k = rot([flow(clip 1), flow(clip 2)]) under crop 2, one angle per sample
            k_rot = self.rotation.draw(f1.shape[0], generator, f1.device)
            q_a, q_b = f1, self.replay_flow(raw[:, 1], v1)
            k_a, _ = self.rotation(self.replay_flow(raw[:, 0], v2), generator, k=k_rot)
            k_b, _ = self.rotation(f2, generator, k=k_rot)
        else:
            q_a, k_a = f1, f2
            if self.fra != "none":
                q_b, k = self.rotation(f1, generator)
                k_b, _ = self.rotation(f2, generator, k=k)
        emb["flow_q"], emb["flow_q_out"] = self.encode_flow_q(self.prepare_flow(q_a))
        emb["flow_k"] = self.encode_flow_k(self.prepare_flow(k_a))
        if self.fra != "none":
            emb["rot_q"], emb["rot_q_out"] = self.encode_flow_q(self.prepare_flow(q_b))
            emb["rot_k"] = self.encode_flow_k(self.prepare_flow(k_b))
        return emb

    def lmcl_steps(self, emb: dict) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-step features for LMCL, all (N, T, D) with T = min(T_rgb, T_flow); the third
        (FRA's extra candidates) is None with ``fra=none``.

        The finer side is average-pooled in time, never the coarser one repeated (repeated
        steps would be identical candidates and cap the loss at log 2)."""
        rgb = self.lmcl_neck(spatial_pool_steps(emb["lmcl_map"]))  # (N, T_rgb, D)
        flow = emb["flow_q_out"].steps  # (N, T_flow, D)
        rot = emb["rot_q_out"].steps if "rot_q_out" in emb else None
        t = min(rgb.shape[1], flow.shape[1])
        if t < 2:  # clips shorter than clip.clip_len, which chose the layer
            raise ValueError(f"LMCL got {t} time step(s) (RGB {rgb.shape[1]}, flow "
                             f"{flow.shape[1]}); it needs >= 2: check clip.clip_len")
        return (match_steps(rgb, t), match_steps(flow, t),
                None if rot is None else match_steps(rot, t))

    def loss_terms(self, emb: dict) -> dict[str, Tensor]:
        """MoDist's four terms (``paper``: with the rotated key as an extra RGB->flow
        negative), the release modes' three second-pair terms, and ``loss_lmcl``."""
        t = self.cfg.method.temperature
        common = dict(rgb_q=emb["rgb_q"], rgb_k=emb["rgb_k"], flow_q=emb["flow_q"],
                      flow_k=emb["flow_k"], rgb_queue=self.rgb_queue.clone(),
                      flow_queue=self.flow_queue.clone(), temperature=t,
                      rgb_queue_mask=self.queue_mask("rgb_queue"),
                      flow_queue_mask=self.queue_mask("flow_queue"))
        if self.fra in ("release", "release_pipeline"):
            terms = mscl_global_terms(**common, rot_q=emb["rot_q"], rot_k=emb["rot_k"],
                                      aug_flow_weights=self.aug_flow_weights)
        else:
            extra = emb["rot_k"][:, None] if self.fra == "paper" else None
            terms = modist_terms(**common, mx_extra_negatives=extra)
        if self.lmcl_weight:
            rgb, flow, rot = self.lmcl_steps(emb)
            terms["loss_lmcl"] = self.lmcl_weight * lmcl_loss(rgb, flow, rot,
                                                              self.lmcl_temperature)
        return terms
