"""The training recipe's pieces: learning-rate schedules, AdamW groups, clipping, weight EMA, settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lba_cli.choices import Schedule
from lba_cli.config import TRAIN_DEFAULTS, FinetuneConfig, TrainConfig, build_run_config, run_config_from_json
from lba_cli.errors import ConfigError
from lba_cli.optim import (
    EMA_WARMUP,
    ONECYCLE_DIV,
    ONECYCLE_FINAL_DIV,
    WeightEma,
    clip_gradients,
    lr_factor,
    make_optimizer,
    recalibrate_batchnorm,
    set_lr,
)


def test_constant_schedule_warms_up_linearly_then_stays():
    factors = [lr_factor(step, 100, 10, "constant") for step in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10:] == [1.0] * 90


def test_cosine_schedule_reaches_the_peak_after_warm_up_and_falls_to_zero():
    total, warmup = 200, 20
    factors = [lr_factor(step, total, warmup, Schedule.cosine) for step in range(total + 1)]
    assert factors[warmup - 1] == pytest.approx(1.0) and factors[warmup] == pytest.approx(1.0)
    assert factors[110] == pytest.approx(0.5)  # half-way through the decay
    assert factors[total] == pytest.approx(0.0, abs=1e-12)
    decay = factors[warmup:]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    longer = [lr_factor(step, 10, 14, "cosine") for step in range(10)]  # a warm-up longer than the run
    assert longer == pytest.approx([(s + 1) / 14 for s in range(10)])


def test_onecycle_rises_from_a_25th_to_the_peak_then_anneals_to_its_floor():
    total = 100
    factors = [lr_factor(step, total, 0, "onecycle") for step in range(total + 1)]
    assert factors[0] == pytest.approx(1 / ONECYCLE_DIV)
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 30  # PyTorch's pct_start 0.3
    assert factors[total] == pytest.approx(1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV))
    assert lr_factor(10, total, 10, "onecycle") == pytest.approx(1.0)  # an explicit warm-up is the rising phase


@pytest.mark.parametrize("decay", [0.0, 0.05], ids=["no-decay", "decay"])
def test_optimizer_decays_weights_not_biases_or_batchnorm_and_keeps_group_scales(decay):
    encoder = nn.Sequential(nn.Conv3d(2, 4, 3), nn.BatchNorm3d(4))
    head = nn.Linear(4, 1)
    optimizer = make_optimizer([(encoder.parameters(), 0.1), (head.parameters(), 1.0)],
                               TrainConfig(lr=2e-3, weight_decay=decay))
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert group["weight_decay"] == (decay if parameter.ndim >= 2 else 0.0)
    assert len(optimizer.param_groups) == (4 if decay else 2)
    set_lr(optimizer, 0.5)
    encoder_ids = {id(p) for p in encoder.parameters()}
    for group in optimizer.param_groups:
        scale = 0.1 if id(group["params"][0]) in encoder_ids else 1.0
        assert group["lr"] == pytest.approx(2e-3 * scale * 0.5)


def test_clipping_scales_the_global_norm_and_reports_it_before_clipping():
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    assert clip_gradients([a, b], None) == pytest.approx(5.0)
    assert torch.equal(a.grad, torch.tensor([3.0, 0.0, 0.0]))  # no clipping asked
    assert clip_gradients([a, b], 1.0) == pytest.approx(5.0)
    norm = math.sqrt(float(a.grad.square().sum() + b.grad.square().sum()))
    assert norm == pytest.approx(1.0, rel=1e-5)


def test_weight_ema_matches_a_hand_computed_average_of_weights_and_batchnorm_statistics():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = WeightEma(model, decay=0.9)
    history = []
    for step in range(5):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(step + 1.0)
        model.train()
        model(torch.randn(8, 2))  # moves the BatchNorm running statistics
        history.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.update(model)
    expected = dict(history[0])
    for t, state in enumerate(history[1:], start=1):
        d = min(0.9, (1 + t) / (EMA_WARMUP + t))
        expected = {k: (d * expected[k] + (1 - d) * v if v.is_floating_point() else v) for k, v in state.items()}
    for key, value in ema.module.state_dict().items():
        assert torch.allclose(value.float(), expected[key].float(), atol=1e-6), key
    assert ema.num_updates == 5


def test_weight_ema_restored_from_its_state_continues_identically():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    straight = WeightEma(model, 0.95)
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(torch.randn(1, 3))
        straight.update(model)
    restored = WeightEma(model, 0.95)
    restored.load(straight.module.state_dict(), straight.num_updates)
    with torch.no_grad():
        model.weight.add_(1.0)
    straight.update(model)
    restored.update(model)
    assert torch.equal(straight.module.weight, restored.module.weight)


BAD_SETTINGS = [
    ({"schedule": "linear"}, "--schedule"),
    ({"warmup_epochs": -1}, "--warmup-epochs"),
    ({"clip_grad_norm": -1.0}, "--clip-grad-norm"),
    ({"ema_decay": 1.0}, "--ema"),
    ({"weight_decay": -0.1}, "--weight-decay"),
]


@pytest.mark.parametrize("fields,option", BAD_SETTINGS, ids=[next(iter(f)) + "=" + str(next(iter(f.values())))
                                                              for f, _ in BAD_SETTINGS])
def test_bad_recipe_settings_name_the_option(fields, option):
    with pytest.raises(ConfigError, match=option):
        TrainConfig(**fields)


def test_runs_recorded_before_standardisation_read_as_raw_pk():
    old = {"kind": "finetune", "finetune": {"data_path": "x.h5", "init": "random"}, "train": {"seed": 1}}
    assert run_config_from_json(old).finetune.standardize_targets is False
    assert run_config_from_json(old).train.schedule is Schedule.constant
    new = {"kind": "finetune", "finetune": {"data_path": "x.h5", "standardize_targets": True}}
    assert run_config_from_json(new).finetune.standardize_targets is True
    assert FinetuneConfig(data_path="x.h5").standardize_targets is True


def test_pretraining_keeps_the_plain_loop_and_finetuning_gets_the_recipe():
    pre = build_run_config("pretrain", None, {"structures": ["s.pdb"]}).train
    assert (pre.schedule, pre.warmup_epochs, pre.clip_grad_norm, pre.ema_decay, pre.weight_decay, pre.precise_bn) == \
        (Schedule.constant, 0.0, 0.0, 0.0, 0.0, False)
    tune = build_run_config("finetune", None, {"finetune": {"data_path": "x.h5"}, "train": {"seed": 2}}).train
    assert tune == TRAIN_DEFAULTS["finetune"].__class__(**{**TRAIN_DEFAULTS["finetune"].__dict__, "seed": 2})
    assert (tune.schedule, tune.warmup_epochs, tune.precise_bn) == (Schedule.cosine, 1.0, True)
    plain = build_run_config("finetune", None, {"finetune": {"data_path": "x.h5"},
                                                "train": {"schedule": "constant", "precise_bn": False}}).train
    assert (plain.schedule, plain.precise_bn) == (Schedule.constant, False)  # the command line wins


class _Batches:
    """A task whose epoch is three fixed batches (what `recalibrate_batchnorm` needs of a task)."""

    def __init__(self, batches):
        self.batches = batches

    def train_batches(self, epoch, skip_batches):
        return iter(self.batches)

    def train_step(self, model, batch):
        return model(batch).sum(), len(batch), {}


def test_precise_batchnorm_statistics_are_the_mean_of_the_epochs_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 1))
    batches = [torch.randn(8, 3) * (i + 1) + i for i in range(3)]
    with torch.no_grad():
        hidden = [model[0](b) for b in batches]
    model.train()
    state = torch.get_rng_state()
    recalibrate_batchnorm(model, model, _Batches(batches), epoch=0)
    assert torch.equal(torch.get_rng_state(), state)  # dropout was off: training draws the same numbers
    assert model.training and model[1].momentum == 0.1  # modes and momentum restored
    norm = model[1]
    assert torch.allclose(norm.running_mean, torch.stack([h.mean(0) for h in hidden]).mean(0), atol=1e-6)
    assert torch.allclose(norm.running_var, torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0), atol=1e-5)


def test_precise_batchnorm_leaves_frozen_layers_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.train()
    model[1].eval()  # a frozen encoder's BatchNorm keeps its pre-trained statistics
    before = model[1].running_var.clone()
    recalibrate_batchnorm(model, model, _Batches([torch.randn(5, 3)]), epoch=0)
    assert torch.equal(model[1].running_var, before) and not model[1].training


def test_the_atom3d_cnn_config_file_is_its_published_settings():
    from pathlib import Path

    from lba_cli.models import create_model

    path = Path(__file__).resolve().parents[1] / "configs" / "atom3d-cnn.toml"
    cnn = build_run_config("finetune", path, {"finetune": {"data_path": "x.h5"}, "train": {"seed": 2}})
    assert (cnn.model.arch, cnn.model.head_hidden, cnn.model.dropout) == ("cnn", 512, 0.25)
    assert (cnn.train.lr, cnn.train.batch_size, cnn.train.num_epochs, cnn.train.schedule) == \
        (1e-3, 16, 50, Schedule.constant)
    assert (cnn.train.weight_decay, cnn.train.warmup_epochs, cnn.train.precise_bn) == (0.0, 0.0, False)
    assert cnn.finetune.standardize_targets is False and cnn.train.seed == 2  # the command line still wins
    model = create_model(cnn.model, 7, "affinity")
    conv_dropouts = [m.p for m in model.encoder.modules() if isinstance(m, nn.Dropout)]
    assert conv_dropouts == [0.1] * 4  # ATOM3D's conv_drop_rate after each convolution block
    assert [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)] == [0.25]
    assert model.head[0].out_features == 512
