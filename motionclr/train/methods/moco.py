"""MoCo on RGB clips: the baseline every motion-aware method is compared with.

Two clips of one video are the positive pair; the queue holds keys of other videos.
He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
https://arxiv.org/abs/1911.05722 (video form as in CoCLR's InfoNCE stage).
"""
from __future__ import annotations

import torch

from motionclr.train.losses import info_nce
from motionclr.train.methods.base import BaseMethod


class MoCo(BaseMethod):
    name = "moco"
    modalities = ("rgb",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.make_queue("queue", cfg.model.dim, cfg.method.queue_size)

    def training_step(self, batch: dict, generator=None) -> tuple[torch.Tensor, dict]:
        v1, v2 = self.views(batch, generator)[:2]
        q = self.encode_q(v1["rgb"])              # (N, D)
        k = self.encode_k(v2["rgb"])              # (N, D), no grad
        nce, logits = info_nce(q, k, self.queue.clone(), self.cfg.method.temperature,
                               queue_mask=self.queue_mask("queue"), return_logits=True)
        self.enqueue("queue", k)
        loss = self.total({"loss_nce": nce})
        acc = (logits.argmax(dim=1) == 0).float().mean()
        return loss, {"loss": loss.detach(), "nce_acc": acc}
