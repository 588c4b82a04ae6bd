"""Sequence identity, and keeping downstream val/test proteins out of pre-training."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import ATOM3D, BM5, require_shared

from lba_cli.errors import DataError
from lba_cli.identity import MIN_CHAIN_LENGTH, find_similar, sequence_identity

# Human lysozyme (130 residues) and ubiquitin (76), unrelated proteins.
LYSOZYME = ("KVFERCELARTLKRLGMDGYRGISLANWMCLAKWESGYNTRATNYNAGDRSTDYGIFQINSRYWCNDGKTPGAVNACHLSCSALLQDNIADAVACAKRVVRDPQGI"
            "RAWVAWRNRCQNRDVRQYVQGCGV")
UBIQUITIN = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"


def _mutate(sequence: str, fraction: float, seed: int) -> str:
    """Substitute ``fraction`` of the positions (spread evenly) by another residue."""
    rng = np.random.default_rng(seed)
    letters = list(sequence)
    for i in range(0, len(letters), round(1 / fraction)):
        letters[i] = rng.choice([c for c in "ACDEFGHIKLMNPQRSTVWY" if c != letters[i]])
    return "".join(letters)


IDENTITY_CASES = [
    ("identical", LYSOZYME, LYSOZYME, 1.0, 1.0),
    ("contained domain", LYSOZYME[20:90], "MSTA" + LYSOZYME + "GSGS", 1.0, 1.0),
    ("half mutated", LYSOZYME, _mutate(LYSOZYME, 0.5, 0), 0.45, 0.55),
    ("unrelated", LYSOZYME, UBIQUITIN, 0.0, 0.25),
    ("empty", LYSOZYME, "", 0.0, 0.0),
]


@pytest.mark.parametrize("name,a,b,low,high", IDENTITY_CASES, ids=[c[0] for c in IDENTITY_CASES])
def test_sequence_identity(name, a, b, low, high):
    assert low <= sequence_identity(a, b) <= high
    assert sequence_identity(a, b) == pytest.approx(sequence_identity(b, a))


def test_find_similar_reports_each_corpus_chain_at_or_above_the_threshold():
    corpus = [UBIQUITIN, _mutate(LYSOZYME, 0.5, 1), LYSOZYME[:25], LYSOZYME]
    hits = find_similar(corpus, [LYSOZYME, "ACDEFGHIKL"], 0.3, workers=1)
    assert [h.corpus_index for h in hits] == [1, 3]  # the 25-residue fragment is shorter than MIN_CHAIN_LENGTH
    assert all(h.query_index == 0 for h in hits) and hits[1].identity == 1.0
    assert MIN_CHAIN_LENGTH == 30


def _demo_sequences_h5(path):
    """An `lba voxelize`-layout file with the demo's val/test ids, splits and chain sequences
    (read straight from the ATOM3D LMDBs; atoms and grids are placeholders)."""
    import lmdb

    from lba_cli.config import GridConfig
    from lba_cli.data.grids_h5 import SEQUENCE_SEPARATOR, write_grids

    ids, splits, sequences = [], [], []
    for split in ("val", "test"):
        env = lmdb.open(str(ATOM3D / "data" / split), readonly=True, lock=False, subdir=True, readahead=False)
        with env.begin() as txn:
            for index in range(int(txn.get(b"num_examples"))):
                record = json.loads(gzip.decompress(txn.get(str(index).encode())))
                ids.append(record["id"])
                splits.append(split)
                sequences.append(SEQUENCE_SEPARATOR.join(item[1] for item in record["seq"]))
        env.close()
    n = len(ids)
    write_grids(path, GridConfig(), ids=ids, affinity_pk=np.zeros(n), split=splits, protein_group=ids,
                source=ids, center_A=np.zeros((n, 3)),
                atoms=[(np.zeros((1, 3)), np.array([6]), np.array([True]))] * n,
                grids=np.zeros((n, 7, 1, 1, 1), np.float32), sources=[str(ATOM3D)], lba_version="test",
                extra_text={"chain_sequences": sequences})
    return path


# The structures the issue found sharing proteins with the demo's val/test complexes
# (thrombin, CDK2, HSP90, RNase A, ...), and three that share none.
LEAKY = ("1JMO_l_u", "1BUH_r_u", "1FQ1_l_u", "1US7_r_u", "1DFJ_r_u", "2B4J_r_u")
CLEAN = ("1A2K_r_u", "1AHW_r_u", "1AKJ_r_u")


def test_bm5_structures_sharing_demo_val_test_proteins_are_excluded(tmp_path):
    from lba_cli.corpus import Corpus, build_corpus
    from lba_cli.pretrain import exclude_similar

    require_shared()
    data = _demo_sequences_h5(tmp_path / "demo.h5")
    folder = tmp_path / "bm5"
    folder.mkdir()
    for name in LEAKY + CLEAN:
        (folder / f"{name}.pdb.gz").symlink_to(BM5 / f"{name}.pdb.gz")
    corpus = Corpus(build_corpus([folder], tmp_path / "c.h5", workers=2).output)
    kept, left_out = exclude_similar(corpus, np.arange(len(corpus)), [data], 0.3, workers=2)
    excluded = {source.split("/")[-1].split(".")[0]: reason for source, reason in left_out}
    assert set(excluded) == set(LEAKY)
    assert all("--exclude-similar-to" in reason and ("test split" in reason or "val split" in reason)
               for reason in excluded.values())
    assert sorted(corpus.sources[kept]) == sorted(str(folder / f"{n}.pdb.gz") for n in CLEAN)


def test_files_without_sequences_are_refused_with_a_clear_message(tiny_h5, tmp_path):
    import h5py

    from lba_cli.data.grids_h5 import read_chain_sequences

    old = tmp_path / "old.h5"
    old.write_bytes(tiny_h5.read_bytes())
    with h5py.File(old, "a") as f:
        del f["complexes/chain_sequences"]
    with pytest.raises(DataError, match="no chain sequences"):
        read_chain_sequences(old)
    ids, split, sequences = read_chain_sequences(tiny_h5)
    assert len(ids) == len(split) == len(sequences) and all(sequences)


@pytest.mark.slow
def test_all_of_bm5_against_the_demo_file(tmp_path):
    from lba_cli.corpus import Corpus, build_corpus
    from lba_cli.pretrain import exclude_similar

    require_shared()
    data = _demo_sequences_h5(tmp_path / "demo.h5")
    corpus = Corpus(build_corpus([BM5], tmp_path / "c.h5").output)
    _, left_out = exclude_similar(corpus, np.arange(len(corpus)), [data], 0.3)
    excluded = {source.split("/")[-1].split(".")[0] for source, _ in left_out}
    assert set(LEAKY) <= excluded
