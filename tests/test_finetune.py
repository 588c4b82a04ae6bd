"""Fine-tuning: the same command with the same seed on the same machine gives the same run."""

from __future__ import annotations

import pytest
from conftest import TINY_MODEL
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.runs import RunStore

runner = CliRunner()


def test_same_command_same_seed_gives_identical_metrics_on_cpu(tmp_path, coarse_h5):
    """Two runs of one command: every recorded number equal, bit for bit (CPU; see the README for
    what differs across machines and on CUDA). A third run with another seed differs, so the
    comparison can fail."""
    runs = tmp_path / "runs"
    for name, seed, epochs in (("a", "3", "2"), ("b", "3", "2"), ("c", "4", "1")):
        result = runner.invoke(app, ["finetune", str(coarse_h5), *TINY_MODEL, "--epochs", epochs, "--seed", seed,
                                     "--name", name, "--runs-dir", str(runs)])
        assert result.exit_code == 0, result.output
    store = RunStore(runs)
    a, b, c = (store.resolve(name) for name in "abc")
    timing = ["elapsed_s"]
    assert_frame_equal(a.read_metrics().drop(timing), b.read_metrics().drop(timing))
    assert a.status["metrics"] == b.status["metrics"]
    for split in ("val", "test"):
        assert_frame_equal(a.read_predictions(split), b.read_predictions(split))
    assert a.read_metrics().height == 2
    with pytest.raises(AssertionError):  # another seed: another first epoch
        assert_frame_equal(a.read_metrics().drop(timing).head(1), c.read_metrics().drop(timing))
