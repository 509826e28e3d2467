"""Small heads shared by the methods: projection MLPs and the order classifier.

Heads return raw (unnormalised) vectors; the methods L2-normalise embeddings before the
losses in :mod:`motionclr.train.losses`, so a head can also feed a non-contrastive term.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ProjectionMLP(nn.Module):
    """2-layer MLP: Linear -> (BN) -> ReLU -> Linear, applied along the last dimension.

    MSCL: 512->512->128 (RGB), 128->128->128 (flow); VCLR / MCL: 2048->2048->128.
    Leading dimensions are flattened for BatchNorm, so (N, D) and per-step (N, T, D)
    inputs both work (BN statistics then pool over N*T).
    """

    def __init__(self, *, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128,
                 use_bn: bool = False):
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not use_bn)]
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, self.in_dim)).view(*lead, self.out_dim)


ORDER_NORMALIZE = ("item", "mcl", "concat", "frame", "none")


class OrderHead(nn.Module):
    """Linear order classifier on a set of per-frame/per-clip embeddings.

    VCLR: 6 items (3 query-set + 3 key-set frames, 128-d each) -> 4 classes (query set
    shuffled? x key set shuffled?). MCL: 3 clips -> 2 classes (which half the query is from).

    ``normalize`` selects where L2 normalisation happens before the linear layer:
    "item" (each item along its features; our default for VCLR), "mcl" (each item, then
    the flattened vector again: MCL's head, the default for MCL), "concat" (the flattened
    vector only; this project's earlier MCL form), "frame" (along the item axis; VCLR's code
    quirk, probably a bug, kept for faithful runs), or "none".
    """

    def __init__(self, *, embed_dim: int = 128, num_items: int = 6, num_classes: int = 4,
                 normalize: str = "item"):
        super().__init__()
        if normalize not in ORDER_NORMALIZE:
            raise ValueError(f"normalize must be one of {ORDER_NORMALIZE}, got {normalize!r}")
        self.normalize, self.num_items, self.embed_dim = normalize, num_items, embed_dim
        self.fc = nn.Linear(num_items * embed_dim, num_classes)
        self.out_dim = num_classes

    def forward(self, items: Tensor) -> Tensor:
        """items (N, num_items, embed_dim) -> logits (N, num_classes)."""
        if items.shape[1:] != (self.num_items, self.embed_dim):
            raise ValueError(f"expected (N, {self.num_items}, {self.embed_dim}), "
                             f"got {tuple(items.shape)}")
        if self.normalize in ("item", "mcl"):
            items = F.normalize(items, dim=-1)
        elif self.normalize == "frame":
            items = F.normalize(items, dim=1)
        flat = items.flatten(1)
        if self.normalize in ("concat", "mcl"):
            flat = F.normalize(flat, dim=-1)
        return self.fc(flat)


def init_momentum_copy(online: nn.Module, momentum: nn.Module) -> None:
    """Copy ``online``'s parameters and buffers into ``momentum`` and freeze it.

    For per-method heads whose key copy the base class does not build itself.
    """
    momentum.load_state_dict(online.state_dict())
    for p in momentum.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def momentum_update(online: nn.Module, momentum: nn.Module, m: float) -> None:
    """EMA: p_k <- m * p_k + (1 - m) * p_q for every parameter pair."""
    for pq, pk in zip(online.parameters(), momentum.parameters()):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)
