"""Heads and the two full models: affinity regression and neighbor-location pairs.

Both follow timm's split: ``forward_features`` (encoder) then ``forward_head``. No
activation follows the last layer (a ReLU there gave constant predictions in the original
neighbor-location work).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RegressionHead", "PairClassifierHead", "AffinityModel", "NeighborModel", "NUM_FACES"]

NUM_FACES = 6


class RegressionHead(nn.Sequential):
    """Linear(F, hidden) -> ReLU -> Dropout -> Linear(hidden, outputs): (B, F) -> (B, outputs)."""

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.5, num_outputs: int = 1) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, num_outputs))


class PairClassifierHead(nn.Sequential):
    """Linear(2F, 512) -> ReLU -> Dropout -> Linear(512, 6): (B, 2F) -> (B, 6) logits."""

    def __init__(self, in_features: int, dropout: float = 0.5, hidden: int = 512) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, NUM_FACES))


class AffinityModel(nn.Module):
    """Encoder + regression head: grids (B, C, X, Y, Z) float32 -> predicted pK (B,) float32.

    The head predicts a standardised affinity z; the model returns ``z * target_std_pk +
    target_mean_pk``, so a saved model predicts pK whatever scale it was trained on. The two
    buffers (float32 scalars) hold the training split's mean and standard deviation of pK when
    fine-tuning standardises its targets, and 0 and 1 otherwise (weights saved before they
    existed load as 0 and 1, which is what those models were trained for).

    The head runs in float32 even under bfloat16 autocast: bfloat16 keeps 8 significant bits,
    so a pK near 8 would be rounded to a multiple of 1/32.
    """

    def __init__(self, encoder: nn.Module, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = RegressionHead(encoder.num_features, hidden, dropout)
        self.register_buffer("target_mean_pk", torch.tensor(0.0))
        self.register_buffer("target_std_pk", torch.tensor(1.0))
        self.register_load_state_dict_pre_hook(_default_target_scale)

    def set_target_scale(self, mean_pk: float, std_pk: float) -> None:
        """Set the pK mean and standard deviation that the head's output is scaled back with."""
        self.target_mean_pk.fill_(mean_pk)
        self.target_std_pk.fill_(std_pk)

    def forward_features(self, grids: torch.Tensor) -> torch.Tensor:
        return self.encoder(grids)  # (B, C, X, Y, Z) -> (B, F)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            standardized = self.head(features.float()).squeeze(-1)  # (B, 1) -> (B,)
            return standardized * self.target_std_pk + self.target_mean_pk

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(grids))

    def reset_head(self, num_outputs: int = 1) -> None:
        """Replace the head's last layer with a fresh one of ``num_outputs`` outputs."""
        last = self.head[-1]
        self.head[-1] = nn.Linear(last.in_features, num_outputs)


def _default_target_scale(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
    for name, value in (("target_mean_pk", 0.0), ("target_std_pk", 1.0)):
        state_dict.setdefault(prefix + name, torch.tensor(value))


class NeighborModel(nn.Module):
    """One encoder shared by both views + pair classifier.

    forward(home, neighbor): two float32 tensors (B, C, X, Y, Z) -> logits (B, 6), where
    logit k scores "the neighbour lies across face k of the home view" (see
    `lba_cli.neighbors.FACE_DIRECTIONS`).
    """

    def __init__(self, encoder: nn.Module, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = PairClassifierHead(2 * encoder.num_features, dropout)

    def forward_features(self, grids: torch.Tensor) -> torch.Tensor:
        return self.encoder(grids)

    def forward(self, home: torch.Tensor, neighbor: torch.Tensor) -> torch.Tensor:
        both = self.forward_features(torch.cat([home, neighbor]))  # (2B, C, X, Y, Z) -> (2B, F)
        pair = torch.cat(both.chunk(2), dim=1)  # (2B, F) -> (B, 2F)
        return self.head(pair)
