"""Shuffle-BN on one process: split batch normalisation plus a shuffled key batch.

MoCo (and MSCL, VCLR, MCL after it) encodes queries and keys with BatchNorm whose
statistics come from each GPU's share of the batch, and shuffles the keys across GPUs
first. Without the shuffle a query and its positive key are normalised with statistics of
the *same* samples, while the queued negatives were normalised with other batches'. That
shared batch signature lets the instance task be solved without the clips' content (the
MoCo paper's "cheating" through BN): every current key looks closer than any queued one.

Here the GPUs are emulated: ``split_batchnorm(module, groups)`` makes every BatchNorm of a
module normalise each of ``groups`` consecutive slices of the batch with that slice's own
statistics (training mode only), and ``shuffled(fn, x, generator)`` runs a key encoder on a
randomly permuted batch and puts the outputs back in order. So query ``i`` (slice of ``i``)
and key ``i`` (slice of wherever the permutation sent it) see different sample sets. On
several ranks each rank splits its own batch, and the key permutation is of all ranks'
clips together (MoCo's cross-GPU shuffle).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from motionclr.train.ranks import gather_all, world_size


class _SplitBN:
    """Mixin over a ``nn.BatchNorm*d`` class: ``groups`` slices, each its own statistics.

    The running statistics move once per call, towards the mean over the slices of each
    slice's mean and unbiased variance (what MoCo's split BN keeps). Eval mode, or
    ``groups == 1``, is the parent class unchanged. State-dict keys are the parent's, so a
    checkpoint loads into either.
    """

    groups: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.groups == 1:
            return super().forward(x)
        if x.shape[0] < 2 * self.groups:
            raise ValueError(f"shuffle-BN: a batch of {x.shape[0]} cannot be split into "
                             f"{self.groups} groups of at least 2 (method.shuffle_bn)")
        self._check_input_dim(x)
        track = self.track_running_stats and self.running_mean is not None
        if track:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
        outs, means, vars_ = [], [], []
        for part in x.chunk(self.groups):
            rm = self.running_mean.clone() if track else None
            rv = self.running_var.clone() if track else None
            outs.append(F.batch_norm(part, rm, rv, self.weight, self.bias, True,
                                     factor if track else 0.0, self.eps))
            if track:
                means.append(rm)
                vars_.append(rv)
        if track:
            with torch.no_grad():
                self.running_mean.copy_(torch.stack(means).mean(0))
                self.running_var.copy_(torch.stack(vars_).mean(0))
        return torch.cat(outs)


_SPLIT_CLASSES: dict[type, type] = {}


def _split_class(cls: type) -> type:
    if cls not in _SPLIT_CLASSES:
        _SPLIT_CLASSES[cls] = type(f"Split{cls.__name__}", (_SplitBN, cls), {})
    return _SPLIT_CLASSES[cls]


def split_batchnorm(module: nn.Module, groups: int) -> nn.Module:
    """Make every BatchNorm1d/2d/3d in ``module`` (in place) normalise ``groups`` slices of
    a training batch separately. Returns ``module``. ``groups`` 1 leaves it as it is."""
    if groups < 1:
        raise ValueError(f"shuffle-BN groups must be >= 1, got {groups}")
    if groups == 1:
        return module
    for m in module.modules():
        if isinstance(m, nn.SyncBatchNorm):
            raise ValueError("shuffle-BN and SyncBatchNorm exclude each other: synchronised "
                             "statistics are shared by a query and its key")
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _SplitBN):
            m.__class__ = _split_class(type(m))
            m.groups = groups
    return module


def shuffled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``fn(x)`` computed on a random permutation of the rows, returned in ``x``'s order:
    under split BN each row is normalised with a random set of other rows.

    On several processes the permutation is of the *global* batch, as MoCo shuffles keys
    across GPUs: every rank's rows are gathered, each rank encodes its share of one
    permutation (rank 0's, broadcast), and the outputs go back to the ranks their inputs
    came from. So a key's BN statistics come from clips of any rank. Ranks must hold equal
    batches (the training sampler makes them so). Keys only: nothing here is
    differentiable.

    Args:
        fn: maps (N, ...) to (N, ...) row by row (up to BN statistics).
        x: (N, ...) this rank's batch.
        generator: a CPU generator for the permutation (reproducible steps), or None.
    """
    world = world_size()
    if world == 1:
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        return fn(x[perm])[torch.argsort(perm)]
    n, rank = x.shape[0], dist.get_rank()
    sizes = gather_all(torch.tensor([n], device=x.device))
    if (sizes != n).any():
        raise ValueError(f"shuffle-BN across ranks needs equal batches, got {sizes.tolist()}")
    everyone = gather_all(x)
    perm = torch.randperm(world * n, generator=generator).to(x.device)
    dist.broadcast(perm, src=0)  # one permutation on every rank
    out = gather_all(fn(everyone[perm[rank * n:(rank + 1) * n]]))
    restored = torch.empty_like(out)
    restored[perm] = out
    return restored[rank * n:(rank + 1) * n]
