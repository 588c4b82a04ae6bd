"""The fine-tuning recipe end to end: standardised targets, exact resume, float32 heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import InterruptAt

from lba_cli.checkpoints import load_checkpoint
from lba_cli.config import FinetuneConfig, ModelConfig, RunConfig, TrainConfig
from lba_cli.data.grids_h5 import read_grid_set
from lba_cli.evaluate import load_affinity_model, predict
from lba_cli.finetune import finetune
from lba_cli.metrics import regression_metrics
from lba_cli.models import create_model
from lba_cli.resume import resume_run
from lba_cli.runs import RunStore

RECIPE = TrainConfig(num_epochs=3, batch_size=2, seed=3, lr=2e-3, weight_decay=0.05, schedule="cosine",
                     warmup_epochs=1.5, clip_grad_norm=1.0, ema_decay=0.9, precise_bn=True)


def _config(data, train=RECIPE, **tune):
    return RunConfig(kind="finetune", finetune=FinetuneConfig(data_path=str(data), **tune), train=train)


def test_checkpoint_predicts_in_pk_with_the_training_splits_scale(tmp_path, tiny_h5):
    store = RunStore(tmp_path / "runs")
    run = finetune(_config(tiny_h5), store)
    data = read_grid_set(tiny_h5)
    train_pk = data.affinity_pk[data.indices("train")].astype(np.float64)
    model, config = load_affinity_model(run, torch.device("cpu"))
    assert float(model.target_mean_pk) == pytest.approx(train_pk.mean(), rel=1e-6)
    assert float(model.target_std_pk) == pytest.approx(train_pk.std(), rel=1e-6)

    from lba_cli.data.dataset import AffinityDataset

    val = AffinityDataset(tiny_h5, "val", read_grid_set(tiny_h5).grid, grid_set=data)
    predicted = predict(model, val, val.grid, torch.device("cpu"))
    saved = run.read_predictions("val")
    assert np.array_equal(saved["predicted_pk"].to_numpy(), predicted)  # the checkpoint reproduces what was reported
    assert run.status["metrics"]["val/rmse"] == pytest.approx(regression_metrics(val.affinity_pk, predicted)["rmse"])
    # the prediction is in pK, not in standard units: near the pK scale of the data
    assert abs(predicted.mean() - train_pk.mean()) < 3 * train_pk.std()


def test_unstandardisation_is_exact_and_old_checkpoints_load_as_raw_pk():
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch="cnn", widths=(4, 4, 4, 4)), 7, "affinity").eval()
    grids = torch.rand(3, 7, 16, 16, 16)
    with torch.no_grad():
        raw = model(grids)
        model.set_target_scale(6.25, 2.5)
        scaled = model(grids)
    assert torch.equal(scaled, raw * torch.tensor(2.5) + torch.tensor(6.25))
    legacy = {k: v for k, v in model.state_dict().items() if not k.startswith("target_")}
    fresh = create_model(ModelConfig(arch="cnn", widths=(4, 4, 4, 4)), 7, "affinity").eval()
    fresh.load_state_dict(legacy)  # a checkpoint from before standardisation: trained on raw pK
    assert (float(fresh.target_mean_pk), float(fresh.target_std_pk)) == (0.0, 1.0)
    with torch.no_grad():
        assert torch.equal(fresh(grids), raw)


def test_head_output_stays_float32_under_bfloat16_autocast():
    """bfloat16 would round a pK near 8 to a multiple of 1/32; the head must not run in it."""
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch="resnet-bottleneck", widths=(8, 8, 16, 16)), 7, "affinity").eval()
    model.set_target_scale(7.9, 1.7)
    grids = torch.rand(4, 7, 12, 12, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.forward_features(grids)
        predicted = model(grids)
    assert features.dtype == torch.bfloat16  # the encoder did run under autocast
    assert predicted.dtype == torch.float32
    with torch.no_grad():
        by_hand = model.head(features.float()).squeeze(-1) * 1.7 + 7.9  # float32 all the way
        in_bf16 = (model.head.to(torch.bfloat16)(features).squeeze(-1) * 1.7 + 7.9).float()
        model.head.float()
    assert torch.allclose(predicted, by_hand, rtol=0, atol=1e-6)
    assert not torch.allclose(predicted, in_bf16, rtol=0, atol=1e-4)  # the check can tell the two apart


def test_schedule_clipping_ema_and_precise_batchnorm_resume_exactly(tmp_path, tiny_h5):
    store = RunStore(tmp_path / "runs")
    straight = finetune(_config(tiny_h5), store)
    with pytest.raises(KeyboardInterrupt):
        finetune(_config(tiny_h5), store, InterruptAt(epoch=2, step=0))  # inside the warm-up's second epoch
    resumed = resume_run(store, store.runs()[-1].id)
    a, b = straight.read_metrics().drop("elapsed_s").to_dicts(), resumed.read_metrics().drop("elapsed_s").to_dicts()
    assert [r["train/lr"] for r in a] == pytest.approx([r["train/lr"] for r in b], rel=1e-9)
    for row_a, row_b in zip(a, b, strict=True):
        for key in row_a:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-5, abs=1e-6, nan_ok=True), key
    last_a = load_checkpoint(straight.checkpoint_path("last"))
    last_b = load_checkpoint(resumed.checkpoint_path("last"))
    assert last_a["ema_updates"] == last_b["ema_updates"] == last_a["step"]
    for part in ("model", "train_model"):  # the average and the trained weights
        for key, value in last_a[part].items():
            assert torch.allclose(value.float(), last_b[part][key].float(), atol=1e-6), (part, key)
    assert not all(torch.equal(last_a["model"][k], last_a["train_model"][k]) for k in last_a["model"])
