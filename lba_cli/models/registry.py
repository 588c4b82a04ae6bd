"""The architectures `lba` can build, by name: one entry each in `ARCHITECTURES`.

The table imports neither torch nor any model code: each entry names the factory that builds
its encoder as ``"module:function"``, imported only when a model is built. So the command
line can list the architectures in ``--arch`` help, and configs can check a name, without
the cost of importing torch.

A new architecture: an encoder module with a factory ``fn(in_channels, config) -> nn.Module``
(the module maps grids (B, C, X, Y, Z) to features (B, F) and sets ``num_features`` = F),
and one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Architecture", "ARCHITECTURES", "DEFAULT_ARCH", "list_models", "describe_architectures", "load_factory"]


@dataclass(frozen=True)
class Architecture:
    """One registered encoder architecture.

    Attributes:
        summary: a few words for ``--arch`` help.
        factory: ``"module:function"`` of ``fn(in_channels, config) -> nn.Module``.
        widths: default stem and stage widths (`lba_cli.config.ModelConfig.widths`).
        bottleneck_divisor: default bottleneck divisor (None: the architecture has none).
        blocks: default residual blocks per stage (None: the architecture has no stages).
    """

    summary: str
    factory: str
    widths: tuple[int, ...]
    bottleneck_divisor: int | None = None
    blocks: int | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "cnn": Architecture("ATOM3D's 3D CNN", "lba_cli.models.resnet3d:make_cnn", widths=(32, 64, 128, 256)),
    "resnet": Architecture("3D ResNet, basic blocks", "lba_cli.models.resnet3d:make_resnet",
                           widths=(64, 128, 256, 512), blocks=1),
    "resnet-bottleneck": Architecture("3D ResNet, bottleneck blocks", "lba_cli.models.resnet3d:make_resnet_bottleneck",
                                      widths=(64, 128, 256, 512), bottleneck_divisor=4, blocks=1),
}
DEFAULT_ARCH = "resnet-bottleneck"


def list_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(ARCHITECTURES)


def describe_architectures() -> str:
    """``"cnn (ATOM3D's 3D CNN), resnet (...), ..."`` for help texts."""
    return ", ".join(f"{name} ({ARCHITECTURES[name].summary})" for name in list_models())


def load_factory(name: str) -> Callable[..., Any]:
    """Import and return the encoder factory of a registered architecture.

    Raises:
        KeyError: for a name that is not registered (configs check names first).
    """
    module, _, function = ARCHITECTURES[name].factory.partition(":")
    return getattr(importlib.import_module(module), function)
