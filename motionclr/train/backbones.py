"""Video backbones: torchvision's 3D ResNets and S3D, and a small 3D CNN for CPU runs.

Every backbone maps ``(N, C, T, H, W)`` float to pooled features ``(N, out_dim)``; with
``features(x)`` it returns the last conv map ``(N, C', T', H', W')`` (MCL's alignment needs
it). Weights are always randomly initialised: pretraining is the point, and nothing is
downloaded.
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
