"""Optimizers and one AMP-aware optimisation step, shared by pretraining and finetuning."""
from __future__ import annotations

import torch

from motionclr.config import Config


def build_optimizer(params, cfg: Config, lr: float):
    if cfg.train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.train.weight_decay)
    if cfg.train.optimizer == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.train.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.train.optimizer!r}; valid: ['adam', 'sgd']")


def optimizer_step(loss, optimizer, params, grad_clip: float = 0.0, scaler=None) -> None:
    """Backward, optional gradient clipping (on unscaled gradients), step; AMP-aware."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
