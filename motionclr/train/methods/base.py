"""The base of every pretraining method: RGB encoder + projector, momentum copies, queues.

A method subclass adds its heads and its loss terms in ``training_step`` and declares what
data it needs (``modalities``, ``sampler``). The training loop only calls
``training_step(batch, generator)``, ``momentum_update(m)`` and ``embed`` for evaluation.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from motionclr.config import Config
from motionclr.datasets.samplers import RandomClip
from motionclr.datasets.transforms import AugmentCfg, GPUAugment
from motionclr.train.backbones import build_backbone
from motionclr.train.heads import ProjectionMLP, init_momentum_copy, momentum_update
from motionclr.train.losses import same_video_mask
from motionclr.train.methods.params import NoParams, parse_params
from motionclr.train.ranks import gather_all
from motionclr.train.shuffle_bn import shuffled, split_batchnorm


@contextmanager
def capture(module: nn.Module):
    """Collect ``module``'s outputs during the block (a forward hook)."""
    out: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: out.append(o))
    try:
        yield out
    finally:
        handle.remove()


def cpu_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator for index draws (permutations, order targets), seeded from
    ``generator`` so a CUDA generator still gives a reproducible step."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
    return torch.Generator().manual_seed(int(seed))


class BaseMethod(nn.Module):
    """RGB backbone + projection head with momentum (key) copies and named queues."""

    name = "base"
    modalities: tuple[str, ...] = ("rgb",)
    num_views = 2
    needs_index = False  # True: the loop loads the motion index for the sampler
    uses_keys = True     # momentum-encoded keys: shuffle-BN applies (method.shuffle_bn)
    Params: type = NoParams  # the dataclass of ``cfg.method.params`` (methods/params.py)

    @classmethod
    def parse_params(cls, cfg: Config):
        """``cfg.method.params`` as a typed ``cls.Params``; unknown keys fail."""
        return parse_params(cls.Params, cfg.method.params, cls.name)

    @classmethod
    def check(cls, cfg: Config, params) -> None:
        """Checks beyond types that need no data (e.g. a layer's time steps); raise
        ValueError. Called by ``validate_method`` and by the constructor."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.params = self.parse_params(cfg)
        self.backbone = build_backbone(cfg.model.backbone, width=cfg.model.width)
        self.projector = ProjectionMLP(in_dim=self.backbone.out_dim, out_dim=cfg.model.dim)
        self.momentum_backbone = copy.deepcopy(self.backbone)
        self.momentum_projector = copy.deepcopy(self.projector)
        init_momentum_copy(self.backbone, self.momentum_backbone)
        init_momentum_copy(self.projector, self.momentum_projector)
        self.augment = GPUAugment(AugmentCfg.from_config(cfg, train=True))
        self.eval_augment = GPUAugment(AugmentCfg.from_config(cfg, train=False))
        self._batch_ids = None
        self._step_gen = None

    def finish_build(self) -> "BaseMethod":
        """Called once the subclass has built every module (``build_method``): with
        ``method.shuffle_bn`` = G > 1, every BatchNorm normalises G slices of a training
        batch apart, and keys are encoded from a shuffled batch (``key_forward``)."""
        if self.uses_keys:
            split_batchnorm(self, self.cfg.method.shuffle_bn)
        return self

    def key_forward(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn(x)`` for a key encoder: on a shuffled batch under shuffle-BN, so a key is
        normalised with other samples than its query (shuffle_bn.py)."""
        if self.cfg.method.shuffle_bn <= 1:
            return fn(x)
        self._step_gen = cpu_generator(self._step_gen)  # a CUDA one: derived once per step
        return shuffled(fn, x, self._step_gen)

    # ---- what the data loader must produce -------------------------------------------
    def sampler(self):
        c = self.cfg.clip
        return RandomClip(clip_len=c.clip_len, stride=c.stride, num_clips=self.num_views)

    # ---- momentum encoders and queues ---------------------------------------------------
    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.momentum_backbone),
                (self.projector, self.momentum_projector)]

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        for online, target in self.momentum_pairs:
            momentum_update(online, target, m)
            # BN running stats are buffers, not parameters: keep the key copy's in sync too.
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)

    def make_queue(self, name: str, dim: int, size: int) -> None:
        self.register_buffer(name, F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer(f"{name}_ptr", torch.zeros((), dtype=torch.long))
        # Which video each entry came from (-1: random init), to mask a query's own video.
        self.register_buffer(f"{name}_ids", torch.full((size,), -1, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, name: str, keys: torch.Tensor) -> None:
        """Write ``keys`` (N·r, D) from every rank into the circular queue ``name``; rows
        belong to the current batch's videos, r consecutive rows per video."""
        keys = gather_all(keys.detach())
        queue, ptr = getattr(self, name), getattr(self, f"{name}_ptr")
        size = queue.shape[0]
        idx = (ptr + torch.arange(keys.shape[0], device=queue.device)) % size
        queue[idx] = keys.to(queue.dtype)
        ids = self._batch_ids
        if ids is not None:
            ids = gather_all(ids.to(queue.device))
            getattr(self, f"{name}_ids")[idx] = ids.repeat_interleave(keys.shape[0] // len(ids))
        ptr.copy_((ptr + keys.shape[0]) % size)

    def queue_mask(self, name: str) -> torch.Tensor | None:
        """(N, K) True where queue ``name`` holds the current query's own video.

        A queue larger than the dataset holds several keys of each video; as negatives they
        would push a video away from itself (methods.md, practical note 9). Off with
        ``method.mask_same_video=false``; None outside ``forward`` (no ids known).
        """
        if self._batch_ids is None or not self.cfg.method.mask_same_video:
            return None
        return same_video_mask(self._batch_ids.to(getattr(self, name).device),
                               getattr(self, f"{name}_ids"))

    # ---- encoders ----------------------------------------------------------------------
    def encode_q(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> L2-normalised embedding (N, dim), with gradients."""
        return F.normalize(self.projector(self.backbone(rgb)), dim=1)

    @torch.no_grad()
    def encode_k(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.key_forward(
            lambda x: F.normalize(self.momentum_projector(self.momentum_backbone(x)), dim=1), rgb)

    @torch.no_grad()
    def embed(self, rgb: torch.Tensor) -> torch.Tensor:
        """Evaluation features: pooled backbone output (N, backbone.out_dim)."""
        return self.backbone(rgb)

    def views(self, batch: dict, generator=None) -> list[dict]:
        """Split a uint8 batch with V clips per video into V augmented float views."""
        keys = [k for k in (*self.modalities, "motion_map") if k in batch]
        n_views = batch[keys[0]].shape[1]
        raw = [{k: batch[k][:, v] for k in keys} for v in range(n_views)]
        # Augmentation is data preparation: fp32 even inside the training step's autocast.
        with torch.autocast(batch[keys[0]].device.type, enabled=False):
            return self.augment.views(raw, generator)

    def total(self, terms: dict) -> torch.Tensor:
        """The loss: named terms weighted by ``method.terms`` (default 1; 0 drops a term).

        This is how a config composes a method from its terms without code.
        """
        weights = self.cfg.method.terms
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise KeyError(f"method.terms names unknown term(s) {unknown}; "
                           f"{self.name}'s terms: {sorted(terms)}")
        return sum(float(weights.get(k, 1.0)) * v for k, v in terms.items())

    def training_step(self, batch: dict, generator=None) -> tuple[torch.Tensor, dict]:
        """uint8 batch on the device -> (scalar loss, dict of detached values to log)."""
        raise NotImplementedError

    def forward(self, batch: dict, generator=None):
        # DDP wraps forward(), so the step goes through it; the batch's video ids feed
        # the queues' same-video masks.
        self._batch_ids = batch.get("index")
        self._step_gen = generator
        try:
            return self.training_step(batch, generator)
        finally:
            self._batch_ids = self._step_gen = None
