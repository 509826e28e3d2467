"""Supervised reference: the same backbone, clips and augmentation, trained on the labels.

Not self-supervised: it shows how much of a dataset's class information an RGB encoder can
learn with a given budget at all, so a self-supervised method's retrieval can be read
against it (``motionclr bench methods`` reports it as the labelled upper reference). One
clip per video, cross-entropy on ``sample["label"]`` (0-based); evaluation uses the pooled
backbone like every method.

``cfg.method.params`` keys:
    num_classes: required, the dataset's number of classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionclr.train.methods.base import BaseMethod
from motionclr.train.methods.params import SupervisedParams


class Supervised(BaseMethod):
    name = "supervised"
    modalities = ("rgb",)
    num_views = 1
    uses_keys = False  # no keys, so nothing for shuffle-BN to keep apart

    Params = SupervisedParams

    @classmethod
    def check(cls, cfg, params) -> None:
        if params.num_classes < 2:
            raise ValueError("method supervised needs method.params.num_classes >= 2 (the "
                             f"dataset's number of classes); got {params.num_classes}")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.check(cfg, self.params)
        self.classifier = nn.Linear(self.backbone.out_dim, self.params.num_classes)
        # no contrastive head or key encoder: parameters without gradients would stall DDP
        self.projector = self.momentum_projector = nn.Identity()
        self.momentum_backbone = nn.Identity()

    @property
    def momentum_pairs(self):
        return []

    def training_step(self, batch: dict, generator=None) -> tuple[torch.Tensor, dict]:
        labels = batch["label"].long()
        if bool((labels < 0).any()):
            raise ValueError("method supervised: the training subset has unlabelled videos")
        x = self.views(batch, generator)[0]["rgb"]          # (N, 3, T, H, W)
        logits = self.classifier(self.backbone(x))          # (N, num_classes)
        loss = self.total({"loss_ce": F.cross_entropy(logits, labels)})
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc}
