"""Encoders: the ATOM3D-style 3D CNN and 3D ResNets, built by name through `lba_cli.models.registry`.

Each encoder maps float32 grids (B, C, X, Y, Z) to features (B, F), F = ``num_features``
(``forward``: the last feature map averaged over space), and exposes that last map itself,
(B, F, X', Y', Z'), as ``forward_spatial`` for heads that need to know where in the box a
feature sits (the neighbor-location face head, `lba_cli.models.heads.FacePairHead`).
Reference parameter counts (7 input channels, head Linear(F, 128) -> ReLU -> Dropout ->
Linear(128, 1)), which `tests/test_models.py` reproduces exactly: ``resnet`` 14,190,017;
``resnet-bottleneck`` with bottleneck divisor 2: 964,161, divisor 4: 463,745; ``resnet``
with widths 32, 64, 128, 256: 3,568,481.
"""

from __future__ import annotations

import torch
from torch import nn

from lba_cli.config import ModelConfig
from lba_cli.models.blocks import BasicBlock3d, Bottleneck3d, ConvBnAct3d

__all__ = ["ResNet3d", "Cnn3d", "make_resnet", "make_resnet_bottleneck", "make_cnn", "CONV_DROPOUT"]

CONV_DROPOUT = 0.1  # ATOM3D's conv_drop_rate (drorlab/atom3d, examples/lba/cnn3d/train.py)


class ResNet3d(nn.Module):
    """Unpadded 3x3x3 stem, then one residual block per stage, each halving the grid.

    Args:
        in_channels: grid channels C.
        widths: stem width, then the output width of each stage, e.g. (64, 128, 256, 512)
            gives a 64-channel stem and stages 64->128->256->512.
        bottleneck_divisor: None for basic blocks; otherwise bottleneck blocks of width
            block input / divisor.
        blocks: blocks per stage; the first changes width and halves the grid.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], bottleneck_divisor: int | None = None,
                 blocks: int = 1) -> None:
        super().__init__()
        self.stem = ConvBnAct3d(in_channels, widths[0], 3)
        stages = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            for index in range(blocks):
                source, stride = (c_in, 2) if index == 0 else (c_out, 1)
                if bottleneck_divisor is None:
                    stages.append(BasicBlock3d(source, c_out, stride=stride))
                else:
                    stages.append(Bottleneck3d(source, c_out, stride=stride, width=max(1,
                                                                                       source // bottleneck_divisor)))
        self.stages = nn.Sequential(*stages)
        self.num_features = widths[-1]

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map: (B, C, X, Y, Z) -> (B, F, X', Y', Z') (21 voxels, 4 widths: 3)."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_spatial(x).mean(dim=(2, 3, 4))  # (B, F, X', Y', Z') -> (B, F)


class Cnn3d(nn.Module):
    """ATOM3D's LBA 3D CNN: unpadded 3x3x3 conv-BN-ReLU layers, max-pool after the 2nd and 4th.

    Townshend et al., "ATOM3D: Tasks on Molecules in Three Dimensions" (NeurIPS 2021
    Datasets and Benchmarks), as its reference code builds it (drorlab/atom3d,
    examples/lba/cnn3d/model.py): widths 32-64-128-256 and dropout after every convolution
    block (0.1, `CONV_DROPOUT`). Two differences: BatchNorm follows each convolution (without
    it the network did not learn in the original neighbor-location work; ATOM3D has it behind
    a flag that is off by default), and the last feature map is averaged over space instead of
    flattened, so any box size works. ATOM3D's dense layer (512 units, dropout 0.25) is the
    regression head: ``--head-hidden 512 --dropout 0.25`` (configs/atom3d-cnn.toml sets these
    and ATOM3D's training settings).

    Args:
        in_channels: grid channels C.
        widths: output channels of each convolution, e.g. (32, 64, 128, 256).
        conv_dropout: dropout probability after each convolution block.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], conv_dropout: float = CONV_DROPOUT) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for index, c_out in enumerate(widths):
            layers.append(ConvBnAct3d(c_in, c_out, 3))
            if index in (1, 3):
                layers.append(nn.MaxPool3d(2))
            layers.append(nn.Dropout(conv_dropout))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after the last block's dropout): (B, C, X, Y, Z) -> (B, F, X', Y', Z')."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_spatial(x).mean(dim=(2, 3, 4))  # (B, F, X', Y', Z') -> (B, F)


def make_resnet(in_channels: int, config: ModelConfig) -> nn.Module:
    """The ``resnet`` encoder: basic blocks (config fields resolved by `lba_cli.models.resolve_model_config`)."""
    return ResNet3d(in_channels, config.widths, blocks=config.blocks)


def make_resnet_bottleneck(in_channels: int, config: ModelConfig) -> nn.Module:
    """The ``resnet-bottleneck`` encoder: bottleneck blocks of width block input / ``config.bottleneck_divisor``."""
    return ResNet3d(in_channels, config.widths, bottleneck_divisor=config.bottleneck_divisor, blocks=config.blocks)


def make_cnn(in_channels: int, config: ModelConfig) -> nn.Module:
    """The ``cnn`` encoder: ATOM3D's 3D CNN with ``config.widths`` (``config.dropout`` is the head's)."""
    return Cnn3d(in_channels, config.widths)
