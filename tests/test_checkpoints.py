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


def _lfs_pointer(path):
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 918273\n")


def _truncated(path):
    torch.save({"config": {"kind": "finetune"}, "model": {"w": torch.zeros(4096)}}, path)
    path.write_bytes(path.read_bytes()[:3000])


def _foreign_pickle(path):
    import pickle

    import numpy as np

    with open(path, "wb") as handle:  # another program's pickle: would run code if unpickled freely
        pickle.dump({"weights": np.zeros(3)}, handle)


def _numpy_inside(path):
    import numpy as np

    torch.save({"config": {}, "model": {}, "extra": np.zeros(2)}, path)


# (id, make the file, message fragment); every message names the file and none suggests weights_only=False
BAD_FILES = [
    ("missing", None, "checkpoint not found"),
    ("empty", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("lfs-pointer", _lfs_pointer, "not a checkpoint but a Git LFS pointer"),
    ("truncated", _truncated, "damaged or truncated checkpoint"),
    ("foreign-pickle", _foreign_pickle, "Python pickle of another program"),
    ("numpy-inside", _numpy_inside, "holds numpy"),
    ("text", lambda p: p.write_text("hello\n"), "not a checkpoint but a text file"),
    ("bare-state-dict", lambda p: torch.save({"weights": torch.zeros(1)}, p), "holds a bare state_dict"),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_files_are_one_line_data_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "best.pt"
    if make is not None:
        make(path)
    with pytest.raises(DataError) as error:
        load_checkpoint(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "weights_only" not in text and "arbitrary code" not in text
