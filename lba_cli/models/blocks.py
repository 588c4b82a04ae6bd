"""3D convolution building blocks: conv-BN-ReLU, basic and bottleneck residual blocks.

Shapes: every block maps float tensors (B, C_in, X, Y, Z) -> (B, C_out, X', Y', Z').
Convolutions are bias-free and followed by BatchNorm (a CNN without BatchNorm did not
learn in the original neighbor-location work). Residual blocks follow He et al., "Deep Residual
Learning for Image Recognition" (CVPR 2016), with the stride on the 3x3x3 convolution
(ResNet v1.5) and a 1x1x1 convolution + BatchNorm projection on the skip path whenever the
width or the stride changes.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBnAct3d", "BasicBlock3d", "Bottleneck3d"]


class ConvBnAct3d(nn.Sequential):
    """Conv3d (no bias) -> BatchNorm3d -> ReLU (optional).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: cubic kernel edge.
        stride: stride in every axis.
        padding: zero padding in every axis (0: unpadded, the grid shrinks by kernel - 1).
        act: apply ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm3d(out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return ConvBnAct3d(in_channels, out_channels, kernel_size=1, stride=stride, act=False)


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection.

    Args:
        in_channels, out_channels: channel counts.
        stride: stride of the first convolution (2 halves each spatial size, rounding up).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBnAct3d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = ConvBnAct3d(out_channels, out_channels, 3, padding=1, act=False)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck3d(nn.Module):
    """1x1x1 reduce -> 3x3x3 (strided) -> 1x1x1 expand, with a residual connection.

    Args:
        in_channels, out_channels, stride: see `BasicBlock3d`.
        width: channels inside the bottleneck (the original work: in_channels / 4).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, width: int) -> None:
        super().__init__()
        self.conv1 = ConvBnAct3d(in_channels, width, 1)
        self.conv2 = ConvBnAct3d(width, width, 3, stride=stride, padding=1)
        self.conv3 = ConvBnAct3d(width, out_channels, 1, act=False)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))
