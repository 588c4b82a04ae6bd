"""Models: encoders by name (`lba_cli.models.registry`), and the affinity and neighbor-location models.

``create_model(config, in_channels, task)`` builds a model from a `ModelConfig` whose
``None`` fields take the registered architecture's defaults; `resolve_model_config` returns
the config with every field filled in, which is what runs and checkpoints record. Importing
this package does not import torch; building a model does.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from lba_cli.errors import ConfigError
from lba_cli.models.registry import ARCHITECTURES, DEFAULT_ARCH, list_models, load_factory

if TYPE_CHECKING:
    from torch import nn

    from lba_cli.config import ModelConfig

__all__ = ["create_encoder", "create_model", "list_models", "resolve_model_config", "ARCHITECTURES", "DEFAULT_ARCH"]


def resolve_model_config(config: ModelConfig) -> ModelConfig:
    """Fill the ``None`` fields of ``config``: the architecture (`DEFAULT_ARCH`), then its defaults.

    Raises:
        ConfigError: if the architecture is not registered.
    """
    if config.arch is None:
        config = dataclasses.replace(config, arch=DEFAULT_ARCH)
    if config.arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {config.arch!r}\nexpected one of: {', '.join(list_models())}")
    defaults = ARCHITECTURES[config.arch]
    return dataclasses.replace(
        config,
        widths=config.widths if config.widths is not None else defaults.widths,
        bottleneck_divisor=config.bottleneck_divisor if config.bottleneck_divisor is not None
        else defaults.bottleneck_divisor,
        blocks=config.blocks if config.blocks is not None else defaults.blocks,
    )


def create_encoder(config: ModelConfig, in_channels: int) -> nn.Module:
    """Build the encoder named by ``config.arch``: grids (B, C, X, Y, Z) -> features (B, F)."""
    config = resolve_model_config(config)
    return load_factory(config.arch)(in_channels, config)


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
        return NeighborModel(encoder, dropout=config.dropout, pair_head=config.pair_head)
    raise ConfigError(f"unknown task {task!r}\nexpected: affinity or neighbor")
