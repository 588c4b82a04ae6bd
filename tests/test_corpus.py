"""The pre-training corpus: the file layout, lazy reads, skips and refusals."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import write_block_pdb

from lba_cli.corpus import Corpus, build_corpus, is_corpus_file, structure_id
from lba_cli.errors import DataError


def test_structure_ids():
    from pathlib import Path

    assert structure_id(Path("1A2K_r_u.pdb.gz")) == "1a2k"
    assert structure_id(Path("model_7.cif")) == "model_7"


def test_build_writes_zones_sequences_and_reports_skips(tmp_path, bm5_subset):
    tiny = write_block_pdb(tmp_path / "tiny.pdb", edge_A=12.0)  # too small for any zone
    (tmp_path / "broken.pdb").write_text("not a structure\n")
    report = build_corpus([bm5_subset, tiny, tmp_path / "broken.pdb"], tmp_path / "c.h5", workers=2)
    assert report.num_structures == 5 and report.num_zones > 0
    reasons = dict(report.skipped)
    assert "no zone" in reasons[str(tiny)]
    assert str(tmp_path / "broken.pdb") in reasons
    assert is_corpus_file(report.output) and not is_corpus_file(tiny)
    corpus = Corpus(report.output)
    assert sorted(corpus.names) == ["1a2k", "1acb", "1ahw", "1ak4", "1akj"]
    assert (corpus.num_zones() > 0).all()
    sequences = corpus.read_sequences()
    assert all(len(max(chains, key=len)) > 100 for chains in sequences)  # receptor chains, from files without SEQRES
    xyz, numbers, occupancy = corpus.read_atoms(0)
    assert xyz.shape == (corpus.atom_offset[1], 3) and (numbers > 1).all()
    assert ((0 <= occupancy) & (occupancy <= 1)).all()
    with pytest.raises(DataError, match="already a corpus"):
        build_corpus([report.output], tmp_path / "again.h5")


def test_corpus_reads_lazily_one_handle_per_worker(bm5_corpus):
    """Only names and offsets live in memory; atoms are read per item through a handle that
    each DataLoader worker opens for itself (the main process never opens one)."""
    import torch

    from lba_cli.config import GridConfig, NeighborConfig
    from lba_cli.loaders import make_loader
    from lba_cli.neighbors import NeighborPairs, PairSampler

    corpus = Corpus(bm5_corpus)
    arrays = {name: value.nbytes for name, value in vars(corpus).items() if isinstance(value, np.ndarray)}
    assert sum(arrays.values()) < 64 * (len(corpus) + 1) * 4  # O(structures), no atoms
    assert not corpus.is_open
    dataset = NeighborPairs(PairSampler(corpus, np.arange(len(corpus)), GridConfig(), 40.0), GridConfig(),
                            NeighborConfig(epoch_size=4), seed=0, train=True, balance=None)
    state = pickle.loads(pickle.dumps(dataset))
    assert state.sampler.corpus._file is None and not state.sampler.corpus._cache
    batches = list(make_loader(dataset, 2, shuffle=False, seed=0, epoch=0, num_workers=1,
                               prefixes=("home_", "neighbor_")))
    assert len(batches) == 2 and isinstance(batches[0]["home_xyz_A"], torch.Tensor)
    assert not corpus.is_open  # the worker read the atoms, not this process
    dataset[0]
    assert corpus.is_open  # reading in this process opens this process's handle


def test_cropped_voxelize_files_are_refused(tiny_h5, tmp_path):
    with pytest.raises(DataError, match="ligand-centred crops"):
        build_corpus([tiny_h5], tmp_path / "c.h5")


def test_whole_protein_voxelize_files_give_their_training_split_only(tmp_path, bm5_subset):
    from lba_cli.config import GridConfig
    from lba_cli.data.atoms import read_structure_atoms
    from lba_cli.data.grids_h5 import ATOM_EXTENT_WHOLE, write_grids

    files = sorted(bm5_subset.iterdir())[:3]
    atoms = []
    for path in files:
        table = read_structure_atoms(path)
        xyz = table.select("x_A", "y_A", "z_A").to_numpy()
        atoms.append((xyz, table["atomic_number"].to_numpy(), np.ones(len(xyz), bool)))
    path = tmp_path / "whole.h5"
    write_grids(path, GridConfig(), ids=["aaaa", "bbbb", "cccc"], affinity_pk=np.zeros(3),
                split=["train", "val", "test"], protein_group=["a", "b", "c"], source=["x"] * 3,
                center_A=np.zeros((3, 3)), atoms=atoms,
                grids=np.zeros((3, 7, 1, 1, 1), np.float32), sources=["x"], lba_version="test",
                extra_text={"chain_sequences": ["AAAA"] * 3}, atom_extent=ATOM_EXTENT_WHOLE)
    report = build_corpus([path], tmp_path / "c.h5")
    assert list(Corpus(report.output).names) == ["aaaa"]
    reasons = dict(report.skipped)
    assert "never used for pre-training" in reasons[f"{path}#bbbb"] and f"{path}#cccc" in reasons


def test_nothing_with_a_zone_still_writes_the_report(tmp_path):
    """As lba voxelize --report: when every structure is left out, the report lists each with
    its reason although no corpus is written; the error names them."""
    tiny = write_block_pdb(tmp_path / "tiny.pdb", edge_A=12.0)
    (tmp_path / "broken.pdb").write_text("not a structure\n")
    report = tmp_path / "left_out.csv"
    with pytest.raises(DataError, match="2 left out") as error:
        build_corpus([tiny, tmp_path / "broken.pdb"], tmp_path / "c.h5", workers=1, report=report)
    assert f"listed with their reasons in {report}" in str(error.value)
    assert not (tmp_path / "c.h5").exists()
    lines = report.read_text().splitlines()
    assert lines[0] == "source,reason" and len(lines) == 3 and "no zone" in report.read_text()


def test_a_damaged_corpus_is_named_not_a_traceback(tmp_path, bm5_corpus):
    import h5py

    hollow = tmp_path / "hollow.h5"
    with h5py.File(hollow, "w") as f:  # the corpus's mark, nothing else (an interrupted hand-made copy)
        f.attrs["format"] = "lba-corpus"
        f.attrs["format_version"] = 1
    with pytest.raises(DataError, match="hollow.h5 is a damaged lba corpus"):
        Corpus(hollow)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(bm5_corpus.read_bytes()[:4096])
    with pytest.raises(DataError, match="truncated.h5"):
        Corpus(truncated)
