"""Checkpoints: the only place that saves and loads, with prefixes stripped and errors named."""

from __future__ import annotations

import pytest
import torch

from lba_cli.checkpoints import CHECKPOINT_FORMAT_VERSION, copy_checkpoint, load_checkpoint, save_checkpoint
from lba_cli.errors import DataError


def test_save_load_round_trip_strips_compile_and_ddp_prefixes(tmp_path):
    weights = {"module._orig_mod.head.weight": torch.arange(6.0).reshape(2, 3), "encoder.bias": torch.ones(2)}
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"config": {"kind": "finetune"}, "model": weights, "epoch": 3})
    payload = load_checkpoint(path)
    assert set(payload["model"]) == {"head.weight", "encoder.bias"}
    assert torch.equal(payload["model"]["head.weight"], weights["module._orig_mod.head.weight"])
    assert payload["epoch"] == 3 and payload["format_version"] == CHECKPOINT_FORMAT_VERSION and payload["lba_version"]
    copy_checkpoint(path, tmp_path / "checkpoints" / "best.pt")
    assert torch.equal(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]["encoder.bias"], torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


BAD_FILES = [(None, "checkpoint not found"), (b"not a checkpoint", "cannot read"),
             ("plain", "is not an lba checkpoint")]


@pytest.mark.parametrize("content,message", BAD_FILES, ids=["missing", "garbage", "foreign"])
def test_bad_files_are_data_errors(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "plain":
        torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(DataError, match=message):
        load_checkpoint(path)
