"""Slim flow encoders for the motion pathway (MSCL / MoDist); discarded after pretraining.

``FlowResNet2D`` is MSCL's ``r2d_18``: a quarter-width ResNet-18 (16-32-64-128 channels)
whose kernels are all 1 x k x k, i.e. a 2D ResNet applied to every flow frame, with a
temporal stride of 2 in the stem (8 flow frames -> 4 steps). ``FlowResNet3D`` is the same
network with 3 x 3 x 3 kernels in the residual blocks. Both take raw flow (N, 2, T, H, W)
(``in_channels=3`` for a colour-coded flow) and return pooled clip features, per-step
features and the last feature map.

With temporal kernel 1 the 2D encoder has no temporal padding, so its per-step features
cannot encode their position in the clip (methods.md note 8); the 3D option takes
``padding_mode="replicate"`` for the same reason.
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn


class FlowFeatures(NamedTuple):
    """Outputs of a flow encoder."""

    pooled: Tensor  # (N, D) clip feature: mean over time and space
    steps: Tensor  # (N, T', D) per-step features: mean over space only
    feature_map: Tensor  # (N, D, T', H', W') last-stage map


class _Block(nn.Module):
    """Basic residual block with a kt x 3 x 3 kernel; stride only in space."""

    def __init__(self, cin: int, cout: int, stride: int, kt: int, padding_mode: str):
        super().__init__()
        pad = (kt // 2, 1, 1)
        self.conv1 = nn.Conv3d(cin, cout, (kt, 3, 3), (1, stride, stride), pad, bias=False,
                               padding_mode=padding_mode)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, (kt, 3, 3), 1, pad, bias=False,
                               padding_mode=padding_mode)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class _SlimResNet(nn.Module):
    """Shared body of the 2D and 3D flow encoders (see the module docstring)."""

    def __init__(self, *, in_channels: int, widths: tuple[int, ...], blocks: tuple[int, ...],
                 block_temporal_kernel: int, stem_temporal_kernel: int,
                 stem_temporal_stride: int, padding_mode: str):
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError("widths and blocks must have the same length")
        kt = stem_temporal_kernel
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, widths[0], (kt, 7, 7), (stem_temporal_stride, 2, 2),
                      ((kt - 1) // 2, 3, 3), bias=False, padding_mode=padding_mode),
            nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        stages, cin = [], widths[0]
        for i, (w, nb) in enumerate(zip(widths, blocks)):
            layer = [_Block(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1,
                            block_temporal_kernel, padding_mode) for j in range(nb)]
            stages.append(nn.Sequential(*layer))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.out_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, flow: Tensor) -> FlowFeatures:
        """flow (N, C_in, T, H, W) -> :class:`FlowFeatures` with D = ``out_dim``."""
        fmap = self.stages(self.stem(flow))  # (N, D, T', H', W')
        steps = fmap.mean(dim=(3, 4)).transpose(1, 2)  # (N, T', D)
        return FlowFeatures(pooled=steps.mean(dim=1), steps=steps, feature_map=fmap)


class FlowResNet2D(_SlimResNet):
    """MSCL's flow encoder: quarter-width ResNet-18, all kernels 1 x k x k.

    Args:
        in_channels: 2 for raw (u, v); 3 for colour-coded flow (MSCL's input).
        widths: stage widths, (16, 32, 64, 128) = quarter-width ResNet-18.
        blocks: residual blocks per stage, (2, 2, 2, 2) = ResNet-18.
        stem_temporal_stride: 2 (MSCL): 8 flow frames -> 4 steps.
        stem_temporal_kernel: 1 keeps the stem per-frame, so stride 2 skips every other
            flow frame (our reading of MSCL's "no temporal convolutions"); 2 uses every
            frame at the cost of mixing neighbouring frames.
    """

    def __init__(self, *, in_channels: int = 2, widths: tuple[int, ...] = (16, 32, 64, 128),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), stem_temporal_stride: int = 2,
                 stem_temporal_kernel: int = 1):
        super().__init__(in_channels=in_channels, widths=widths, blocks=blocks,
                         block_temporal_kernel=1, stem_temporal_kernel=stem_temporal_kernel,
                         stem_temporal_stride=stem_temporal_stride, padding_mode="zeros")


class FlowResNet3D(_SlimResNet):
    """Slim 3D ResNet on flow: 3 x 3 x 3 blocks, stem kernel 3 x 7 x 7.

    Args: as :class:`FlowResNet2D`, plus
        padding_mode: "replicate" (default) so no step sees a zero border in time, which
            would leak its position into the per-step features; "zeros" as usual.
        blocks: (1, 1, 1, 1) by default to stay cheap.
    """

    def __init__(self, *, in_channels: int = 2, widths: tuple[int, ...] = (16, 32, 64, 128),
                 blocks: tuple[int, ...] = (1, 1, 1, 1), stem_temporal_stride: int = 2,
                 padding_mode: str = "replicate"):
        super().__init__(in_channels=in_channels, widths=widths, blocks=blocks,
                         block_temporal_kernel=3, stem_temporal_kernel=3,
                         stem_temporal_stride=stem_temporal_stride, padding_mode=padding_mode)


FLOW_ENCODERS = {"r2d18_slim": FlowResNet2D, "r3d_slim": FlowResNet3D}


def build_flow_encoder(name: str, **kwargs) -> _SlimResNet:
    """Construct a flow encoder by registry name (keyword arguments to its constructor)."""
    if name not in FLOW_ENCODERS:
        raise ValueError(f"unknown flow encoder {name!r}; valid: {sorted(FLOW_ENCODERS)}")
    return FLOW_ENCODERS[name](**kwargs)
