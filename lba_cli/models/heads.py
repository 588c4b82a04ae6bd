"""Heads and the two full models: affinity regression and neighbor-location pairs.

Both follow timm's split: ``forward_features`` (encoder) then ``forward_head``. No
activation follows the last layer (a ReLU there gave constant predictions in the original
neighbor-location work).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RegressionHead", "PairClassifierHead", "FacePairHead", "face_slices", "AffinityModel", "NeighborModel",
           "NUM_FACES", "PAIR_HEADS"]

NUM_FACES = 6
PAIR_HEADS = ("faces", "pooled")
_OPPOSITE_FACE = (1, 0, 3, 2, 5, 4)  # as lba_cli.neighbors.OPPOSITE_FACE (+X, -X, +Y, -Y, +Z, -Z)


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


def face_slices(maps: torch.Tensor) -> torch.Tensor:
    """The outer layer of a cubic feature map at each of the 6 box faces.

    Faces are in the order of `lba_cli.neighbors.FACE_DIRECTIONS` (+X, -X, +Y, -Y, +Z, -Z).
    Each face keeps its two in-plane axes in array order (X before Y before Z), so the slice
    of face k of one view and of the opposite face of another view in the same frame line up
    position by position.

    Args:
        maps: float tensor of shape (B, F, D, D, D).

    Returns:
        float tensor of shape (B, 6, D * D, F).
    """
    faces = (maps[:, :, -1], maps[:, :, 0], maps[:, :, :, -1], maps[:, :, :, 0], maps[:, :, :, :, -1],
             maps[:, :, :, :, 0])
    return torch.stack([f.flatten(2) for f in faces], 1).transpose(-1, -2)  # (B, 6, F, D*D) -> (B, 6, D*D, F)


class FacePairHead(nn.Module):
    """Scores face k from the two views' features at the faces that touch when the label is k.

    For each face k and each position p of the outer layer of the encoder's last feature map,
    the home view's features h at face k and the neighbour's features n at the opposite face
    (same in-plane position) go through one shared layer, Linear(3F, hidden) on [h, n, h * n]
    -> ReLU -> Dropout; the mean over positions goes through Linear(hidden, 1). Global average
    pooling (`PairClassifierHead`) discards where in the box a feature sits, so "what lies at
    my +X face" can only be read from it indirectly, while the density difference between the
    views survives pooling; this head is given the position.

    forward(home_maps, neighbor_maps): two (B, F, D, D, D) tensors -> logits (B, 6).
    """

    def __init__(self, in_features: int, dropout: float = 0.5, hidden: int = 128) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Linear(3 * in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, home_maps: torch.Tensor, neighbor_maps: torch.Tensor) -> torch.Tensor:
        home = face_slices(home_maps)  # (B, 6, P, F)
        neighbor = face_slices(neighbor_maps)[:, list(_OPPOSITE_FACE)]
        pooled = self.local(torch.cat([home, neighbor, home * neighbor], dim=-1)).mean(dim=2)  # (B, 6, hidden)
        return self.score(pooled).squeeze(-1)  # (B, 6)


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

    Args:
        encoder: the shared encoder (with ``forward_spatial`` for the ``faces`` head).
        dropout: dropout in the head.
        pair_head: ``faces`` (`FacePairHead`, on the encoder's last feature map) or
            ``pooled`` (`PairClassifierHead` on the two pooled feature vectors). Either way
            ``forward_features`` is the encoder's pooled output, which fine-tuning uses.
    """

    def __init__(self, encoder: nn.Module, dropout: float = 0.5, pair_head: str = "faces") -> None:
        super().__init__()
        if pair_head not in PAIR_HEADS:
            raise ValueError(f"pair_head must be one of {PAIR_HEADS}, got {pair_head!r}")
        self.encoder = encoder
        self.pair_head = pair_head
        if pair_head == "faces":
            self.head: nn.Module = FacePairHead(encoder.num_features, dropout)
        else:
            self.head = PairClassifierHead(2 * encoder.num_features, dropout)

    def forward_features(self, grids: torch.Tensor) -> torch.Tensor:
        return self.encoder(grids)

    def forward(self, home: torch.Tensor, neighbor: torch.Tensor) -> torch.Tensor:
        both = torch.cat([home, neighbor])  # (2B, C, X, Y, Z)
        if self.pair_head == "faces":
            home_maps, neighbor_maps = self.encoder.forward_spatial(both).chunk(2)  # (B, F, D, D, D) each
            return self.head(home_maps, neighbor_maps)
        pair = torch.cat(self.forward_features(both).chunk(2), dim=1)  # (2B, F) -> (B, 2F)
        return self.head(pair)
