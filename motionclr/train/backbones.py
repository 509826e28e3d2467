"""Video backbones: torchvision's 3D ResNets and S3D, and a small 3D CNN for CPU runs.

Every backbone maps ``(N, C, T, H, W)`` float to pooled features ``(N, out_dim)``; with
``features(x)`` it returns the last conv map ``(N, C', T', H', W')``. Weights are always
randomly initialised: pretraining is the point, and nothing is downloaded.

Per-step terms (MSCL's LMCL, MCL's alignment) need a map with several time steps, and the
last map has few (r3d_18 at 8 frames: T' = 1). ``stage_layers`` / ``conv_layers`` name the
candidate maps, ``layer_time_steps`` measures their T for a clip length, and ``pick_layer``
chooses one: by default the deepest with T >= 4, refusing T < 2.
"""
from __future__ import annotations

import torch
from torch import nn


class Small3D(nn.Module):
    """Four conv-BN-ReLU stages (3x3x3), spatial stride 2 each, temporal stride 2 twice.

    A few hundred thousand parameters: trains on a 2-core CPU in minutes.
    """

    def __init__(self, *, in_channels: int = 3, width: int = 32):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        layers, c_in = [], in_channels
        for i, c in enumerate(chans):
            t_stride = 2 if i in (1, 2) else 1
            layers += [nn.Conv3d(c_in, c, 3, stride=(t_stride, 2, 2), padding=1, bias=False),
                       nn.BatchNorm3d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out_dim = chans[-1]
        # each stage's output (after its ReLU), shallow to deep
        self.stage_names = tuple(f"body.{3 * i + 2}" for i in range(len(chans)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))


class TorchvisionVideo(nn.Module):
    """torchvision r3d_18 / r2plus1d_18 / s3d without the classifier, random init."""

    def __init__(self, *, name: str, in_channels: int = 3):
        super().__init__()
        from torchvision.models import video as tvv
        net = getattr(tvv, name)(weights=None)
        if name == "s3d":
            self.body = net.features
            self.out_dim = 1024
            self.stage_names = tuple(f"body.{i}" for i in range(len(self.body)))
            if in_channels != 3:
                conv = self.body[0][0][0]
                self.body[0][0][0] = nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size,
                                               conv.stride, conv.padding, bias=False)
        else:
            if in_channels != 3:
                conv = net.stem[0]
                net.stem[0] = nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size,
                                        conv.stride, conv.padding, bias=False)
            self.body = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
            self.out_dim = 512
            self.stage_names = tuple(f"body.{i}" for i in range(5))  # stem, layer1..4

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))


BACKBONES = ("r3d_18", "r2plus1d_18", "s3d", "small3d")


def build_backbone(name: str, *, in_channels: int = 3, width: int = 32) -> nn.Module:
    if name == "small3d":
        return Small3D(in_channels=in_channels, width=width)
    if name in BACKBONES:
        return TorchvisionVideo(name=name, in_channels=in_channels)
    raise ValueError(f"unknown backbone {name!r}; valid: {list(BACKBONES)}")


# ----------------------------------------------------------------------------- layer choice

MIN_STEPS = 4  # MSCL's LMCL map and MCL's saliency map both have T = 4


def stage_layers(backbone: nn.Module) -> list[str]:
    """Module names of the backbone's stage outputs, shallow to deep (LMCL candidates)."""
    return list(backbone.stage_names)


def conv_layers(backbone: nn.Module) -> list[str]:
    """Module names of every Conv3d, in forward order (saliency candidates: a conv output
    is not pooled directly, so its gradient varies over space)."""
    return [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv3d)]


def layer_time_steps(backbone: nn.Module, names: list[str], clip_len: int,
                     in_channels: int = 3, size: int = 64) -> dict[str, int]:
    """T of each named module's output for a ``clip_len``-frame clip (one probe forward in
    eval mode; temporal sizes do not depend on the spatial size)."""
    shapes = layer_shapes(backbone, names, clip_len, in_channels, size)
    return {n: s[1] for n, s in shapes.items()}


@torch.no_grad()
def layer_shapes(backbone: nn.Module, names: list[str], clip_len: int,
                 in_channels: int = 3, size: int = 64) -> dict[str, tuple[int, ...]]:
    """(C, T, H, W) of each named module's output for a ``clip_len`` x ``size``^2 clip."""
    mods = dict(backbone.named_modules())
    unknown = [n for n in names if n not in mods]
    if unknown:
        raise ValueError(f"unknown backbone layer(s) {unknown}")
    steps: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(module, inputs, output):  # returns None: the output is not replaced
            steps.setdefault(name, tuple(output.shape[1:]))
        return hook
    hooks = [mods[n].register_forward_hook(record(n)) for n in names]
    was_training = backbone.training
    try:
        backbone.eval()
        p = next(backbone.parameters())
        backbone(torch.zeros(1, in_channels, clip_len, size, size, device=p.device,
                             dtype=p.dtype))
    finally:
        backbone.train(was_training)
        for h in hooks:
            h.remove()
    return steps


def pick_layer(backbone: nn.Module, candidates: list[str], clip_len: int, requested: str = "",
               *, what: str, param: str, min_steps: int = MIN_STEPS) -> tuple[str, int]:
    """The layer a per-step term reads, and its T.

    ``requested`` (a module name) wins; "" picks the deepest candidate with
    T >= ``min_steps``, or, when no candidate has that many, the one with the most steps.
    A map with T < 2 cannot order anything in time: refused.
    """
    names = [requested] if requested else list(candidates)
    if requested and requested not in dict(backbone.named_modules()):
        raise ValueError(f"method.params.{param}={requested!r} is not a layer of the backbone;"
                         f" candidates: {candidates}")
    steps = layer_time_steps(backbone, names, clip_len)
    if requested:
        name = requested
    else:
        enough = [n for n in names if steps[n] >= min_steps]
        name = enough[-1] if enough else max(reversed(names), key=lambda n: steps[n])
    if steps[name] < 2:
        raise ValueError(
            f"{what} needs >= 2 time steps, but layer {name!r} has T={steps[name]} for "
            f"clip.clip_len={clip_len}; use a longer clip or an earlier layer "
            f"(method.params.{param}; T per layer: "
            f"{ {n: t for n, t in layer_time_steps(backbone, candidates, clip_len).items()} })")
    return name, steps[name]
