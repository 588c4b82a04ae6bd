"""Model registry: encoders by name, and the affinity and neighbor-location models.

``create_model(config, in_channels, task)`` builds a model from a `ModelConfig` whose
``None`` fields take the registered architecture's defaults; `resolve_model_config` returns
the config with every field filled in, which is what runs and checkpoints record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lba_cli.config import DEFAULT_ARCH, ModelConfig
from lba_cli.errors import ConfigError

__all__ = [
    "register_model",
    "create_encoder",
    "create_model",
    "list_models",
    "resolve_model_config",
    "ArchDefaults",
]


@dataclass(frozen=True)
class ArchDefaults:
    """Defaults an architecture gives to the ``None`` fields of `ModelConfig`."""

    widths: tuple[int, ...]
    bottleneck_divisor: int | None = None
    blocks: int | None = None


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ArchDefaults]] = {}


def register_model(name: str, defaults: ArchDefaults) -> Callable:
    """Register an encoder factory ``fn(in_channels, config) -> nn.Module`` under ``name``.

    The module must set ``num_features`` (F) and map (B, C, X, Y, Z) to (B, F).
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = (factory, defaults)
        return factory

    return decorator


def _ensure_registered() -> None:
    from lba_cli.models import resnet3d  # noqa: F401  (registers on import)


def list_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    _ensure_registered()
    return sorted(_REGISTRY)


def resolve_model_config(config: ModelConfig) -> ModelConfig:
    """Fill the ``None`` fields of ``config``: the architecture (`DEFAULT_ARCH`), then its defaults.

    Raises:
        ConfigError: if the architecture is not registered.
    """
    _ensure_registered()
    if config.arch is None:
        config = dataclasses.replace(config, arch=DEFAULT_ARCH)
    if config.arch not in _REGISTRY:
        raise ConfigError(f"unknown architecture {config.arch!r}\nexpected one of: {', '.join(sorted(_REGISTRY))}")
    defaults = _REGISTRY[config.arch][1]
    return dataclasses.replace(
        config,
        widths=config.widths if config.widths is not None else defaults.widths,
        bottleneck_divisor=config.bottleneck_divisor if config.bottleneck_divisor is not None else defaults.bottleneck_divisor,
        blocks=config.blocks if config.blocks is not None else defaults.blocks,
    )


def create_encoder(config: ModelConfig, in_channels: int) -> nn.Module:
    """Build the encoder named by ``config.arch`` (see `register_model`)."""
    config = resolve_model_config(config)
    return _REGISTRY[config.arch][0](in_channels, config)


def create_model(config: ModelConfig, in_channels: int, task: str) -> nn.Module:
    """Build a full model.

    Args:
        config: architecture and head settings.
        in_channels: channels C of the input grids.
        task: ``affinity`` (encoder + regression head, output (B,) pK) or ``neighbor``
            (shared encoder + pair classifier, output (B, 6) logits).

    Raises:
        ConfigError: on an unknown architecture or task.
    """
    from lba_cli.models.heads import AffinityModel, NeighborModel

    encoder = create_encoder(config, in_channels)
    if task == "affinity":
        return AffinityModel(encoder, hidden=config.head_hidden, dropout=config.dropout)
    if task == "neighbor":
        return NeighborModel(encoder, dropout=config.dropout)
    raise ConfigError(f"unknown task {task!r}\nexpected: affinity or neighbor")
