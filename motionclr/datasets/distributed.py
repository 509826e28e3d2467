"""Samplers for several ranks.

Training: every rank must take the same number of steps (a rank with one batch more hangs
the others at the next all-reduce), so the order is split evenly and the remainder dropped
each epoch (a different remainder every epoch, since the order is reshuffled).
Evaluation: every video exactly once. torch's DistributedSampler pads with duplicates to
make the split even, which biases metrics; ``EvalShardSampler`` gives rank r the indices
r, r+world, ... and the caller gathers features by video index (see ``gather_by_index``).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class TrainShardSampler(Sampler[int]):
    """Shuffled, equal-length per-rank order; reshuffled by ``set_epoch``."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 epoch_tagged: bool = False):
        """``epoch_tagged``: yield ``(epoch, i)`` instead of ``i`` (``ShardClipDataset.plan``
        takes both), so persistent workers need no ``set_epoch`` of their own."""
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.n, self.world, self.rank, self.seed, self.epoch = n, num_replicas, rank, seed, 0
        self.per_rank = n // num_replicas
        self.epoch_tagged = epoch_tagged

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)[: self.per_rank * self.world]
        mine = order[self.rank::self.world].tolist()
        return iter([(self.epoch, i) for i in mine] if self.epoch_tagged else mine)

    def __len__(self) -> int:
        return self.per_rank


class EvalShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: disjoint, complete, no padding."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0):
        self.n, self.world, self.rank = n, num_replicas, rank

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return max(0, math.ceil((self.n - self.rank) / self.world))


def gather_by_index(parts: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> torch.Tensor:
    """Reassemble per-rank (indices, features) into one (n, D) array in dataset order.

    Raises if a video is missing or seen twice, so a sampler bug cannot bias a metric.
    """
    idx = torch.cat([p[0] for p in parts])
    feats = torch.cat([p[1] for p in parts])
    if idx.numel() != n or torch.unique(idx).numel() != n:
        raise RuntimeError(f"evaluation saw {idx.numel()} items ({torch.unique(idx).numel()} "
                           f"distinct) for {n} videos")
    out = torch.empty((n,) + feats.shape[1:], dtype=feats.dtype)
    out[idx] = feats
    return out
