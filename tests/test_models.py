"""Architectures: reference parameter counts, shapes, gradients, and learning."""

from __future__ import annotations

import pytest
import torch

from lba_cli.config import ModelConfig
from lba_cli.models import create_model, list_models

REFERENCE_COUNTS = [
    ("resnet-basic", ModelConfig(arch="resnet", head_hidden=128), 14_190_017),
    ("resnet-bottleneck-div2", ModelConfig(arch="resnet-bottleneck", bottleneck_divisor=2, head_hidden=128), 964_161),
    ("resnet-bottleneck-div4", ModelConfig(arch="resnet-bottleneck", bottleneck_divisor=4, head_hidden=128), 463_745),
    ("resnet-basic-narrow", ModelConfig(arch="resnet", widths=(32, 64, 128, 256), head_hidden=128), 3_568_481),
]


@pytest.mark.parametrize("name,config,count", REFERENCE_COUNTS, ids=[c[0] for c in REFERENCE_COUNTS])
def test_reference_parameter_counts(name, config, count):
    model = create_model(config, 7, "affinity")
    assert sum(p.numel() for p in model.parameters()) == count


def test_registry_lists_the_three_architectures():
    assert list_models() == ["cnn", "resnet", "resnet-bottleneck"]


@pytest.mark.parametrize("arch", list_models())
def test_forward_shapes_and_finite(arch):
    torch.manual_seed(0)
    x = torch.rand(2, 7, 16, 16, 16)
    affinity = create_model(ModelConfig(arch=arch), 7, "affinity")
    neighbor = create_model(ModelConfig(arch=arch), 7, "neighbor")
    out = affinity(x)
    logits = neighbor(x, x.flip(0))
    assert out.shape == (2,) and torch.isfinite(out).all()
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", list_models())
def test_every_parameter_changes_after_one_step(arch):
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch=arch, dropout=0.0), 7, "affinity")
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = ((model(torch.rand(4, 7, 16, 16, 16)) - torch.tensor([1.0, 5.0, 3.0, 8.0])) ** 2).mean()
    loss.backward()
    optimizer.step()
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert unchanged == []


def test_no_activation_after_the_output_layer():
    """Negative pK-like targets must be reachable (a final ReLU gave constant predictions)."""
    model = create_model(ModelConfig(arch="cnn"), 7, "affinity")
    assert isinstance(model.head[-1], torch.nn.Linear)
    assert isinstance(create_model(ModelConfig(arch="cnn", pair_head="pooled"), 7, "neighbor").head[-1],
                      torch.nn.Linear)
    assert isinstance(create_model(ModelConfig(arch="cnn", pair_head="faces"), 7, "neighbor").head.score,
                      torch.nn.Linear)


@pytest.mark.parametrize("arch", list_models())
def test_the_spatial_map_averaged_is_the_encoders_features(arch):
    """Heads may read the last feature map; fine-tuning still gets its average over space."""
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch=arch, pair_head="faces"), 7, "neighbor").eval()
    x = torch.rand(2, 7, 21, 21, 21)
    maps = model.encoder.forward_spatial(x)
    assert maps.dim() == 5 and maps.shape[:2] == (2, model.encoder.num_features)
    assert torch.allclose(maps.mean(dim=(2, 3, 4)), model.forward_features(x), atol=1e-5)


def test_face_slices_line_up_the_faces_that_touch():
    """Face k of the home map and the opposite face of the neighbour map: same in-plane positions."""
    from lba_cli.models.heads import face_slices
    from lba_cli.neighbors import FACE_DIRECTIONS, OPPOSITE_FACE

    size = 3
    for k, direction in enumerate(FACE_DIRECTIONS):
        axis = int(abs(direction).argmax())
        home, neighbor = torch.zeros(1, 1, size, size, size), torch.zeros(1, 1, size, size, size)
        # One marked cell on the home map's face k; the neighbour's cell that touches it lies
        # on its opposite face, at the same in-plane coordinates.
        cell = [0, 2, 1]
        cell[axis] = size - 1 if direction[axis] > 0 else 0
        home[(0, 0, *cell)] = 1.0
        cell[axis] = size - 1 - cell[axis]
        neighbor[(0, 0, *cell)] = 1.0
        home_faces, neighbor_faces = face_slices(home)[0, :, :, 0], face_slices(neighbor)[0, :, :, 0]  # (6, P)
        assert home_faces[k].sum() == 1 and torch.equal(home_faces[k], neighbor_faces[OPPOSITE_FACE[k]])


def test_the_face_head_learns_to_match_the_faces_that_touch():
    """Given maps whose true facing layers carry the same random pattern, the head alone finds the face."""
    from lba_cli.models.heads import FacePairHead
    from lba_cli.neighbors import OPPOSITE_FACE

    torch.manual_seed(0)

    def batch(n):
        home, neighbor = torch.randn(n, 4, 3, 3, 3), torch.randn(n, 4, 3, 3, 3)
        labels = torch.randint(0, 6, (n,))
        slices = [(slice(None), -1), (slice(None), 0)]  # the outer layers along one axis
        for i, k in enumerate(labels.tolist()):
            axis, side = k // 2, slices[k % 2][1]
            index = [slice(None)] * 3
            index[axis] = side
            other = list(index)
            other[axis] = -1 - side if side == 0 else 0
            pattern = torch.randn(4, 3, 3)
            home[(i, slice(None), *index)] = pattern
            neighbor[(i, slice(None), *other)] = pattern
        return home, neighbor, labels

    head = FacePairHead(4, dropout=0.0, hidden=32)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        home, neighbor, labels = batch(64)
        loss = torch.nn.functional.cross_entropy(head(home, neighbor), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    home, neighbor, labels = batch(512)
    accuracy = float((head(home, neighbor).argmax(1) == labels).float().mean())
    assert accuracy > 0.8, accuracy
    assert OPPOSITE_FACE.tolist() == [1, 0, 3, 2, 5, 4]


def test_every_conv_is_bias_free_and_batch_normalised():
    model = create_model(ModelConfig(arch="resnet-bottleneck"), 7, "affinity")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert convs and all(c.bias is None for c in convs)
    assert len(norms) == len(convs)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_models())
def test_overfits_eight_real_complexes(arch, tiny_h5):
    """Every registered model drives the training MSE far below the label variance."""
    from lba_cli.data.dataset import AffinityDataset, collate_atoms
    from lba_cli.data.grids_h5 import read_grid_set
    from lba_cli.voxel import voxelize_batch

    torch.manual_seed(0)
    data = read_grid_set(tiny_h5)
    grid = data.grid
    data.split[:] = "train"
    dataset = AffinityDataset(tiny_h5, "train", grid, grid_set=data)
    batch = collate_atoms([dataset[i] for i in range(len(dataset))])
    grids = voxelize_batch(batch["xyz_A"], batch["channel"], batch["is_protein"], grid)
    target = batch["affinity_pk"]
    model = create_model(ModelConfig(arch=arch, dropout=0.0), grid.num_channels, "affinity")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(grids), target)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        final = torch.nn.functional.mse_loss(model(grids), target).item()
    assert final < 0.1 * float(target.var(unbiased=False))


@pytest.mark.parametrize("arch", ["resnet", "resnet-bottleneck"])
def test_more_blocks_per_stage_add_unstrided_blocks(arch):
    one = create_model(ModelConfig(arch=arch), 7, "affinity")
    two = create_model(ModelConfig(arch=arch, blocks=2), 7, "affinity")
    assert len(two.encoder.stages) == 2 * len(one.encoder.stages) == 6
    assert sum(p.numel() for p in two.parameters()) > sum(p.numel() for p in one.parameters())
    assert two(torch.rand(2, 7, 21, 21, 21)).shape == (2,)
