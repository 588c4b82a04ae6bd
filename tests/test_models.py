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
    assert isinstance(create_model(ModelConfig(arch="cnn"), 7, "neighbor").head[-1], torch.nn.Linear)


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
