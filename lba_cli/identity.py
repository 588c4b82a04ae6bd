"""Sequence identity between protein chains, to keep downstream proteins out of pre-training.

Definition. The identity of chains a and b is

    identity(a, b) = (identical residue pairs in the best local alignment) / min(len(a), len(b))

where the best local alignment is Smith-Waterman with BLOSUM62, gap opening -11 and gap
extension -1 (BLAST's blastp defaults), computed exactly by Biopython's `PairwiseAligner`
(the first of the optimal alignments when there are ties). Chains are the polymer
sequences stored with each structure or complex; chains shorter than `MIN_CHAIN_LENGTH`
(30) residues are not compared: peptides match unrelated proteins by chance under this
definition (3 identical residues are 30 % of a 10-mer; the demo test set holds 10- and
11-residue peptides bound to thrombin and others), and they are not what a binding-affinity
split keeps apart. This is the one thing the test may miss: a peptide shared by design.

Why local, and why the shorter chain. A pre-training structure that contains a domain of a
downstream protein leaks that domain even if the rest of its chain is unrelated, so a local
alignment is right; dividing by the shorter length makes a fully contained domain count as
identical, and keeps a short chance match between long chains from counting (a 15-residue
identical stretch in two 300-residue chains is 5 %). ATOM3D's LBA split ("split by sequence
identity 30 %") used BLAST the same way: blastp of each chain against the others, a hit
counting when its number of identical residues divided by the *query* chain's length
reached the cutoff (atom3d.util.sequence.find_similar). Dividing by the shorter chain gives
a value at least as high as ATOM3D's in either direction, so this test excludes everything
that split would have kept apart, and a little more. BLAST's heuristics (seeding, e-value
cut-off) can also miss weak hits that the exact alignment here finds.

Cost. One alignment of two ~300-residue chains takes ~1 ms; pairs are spread over worker
processes. Identical sequences are aligned once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

__all__ = ["SimilarHit", "sequence_identity", "find_similar", "MIN_CHAIN_LENGTH"]

MIN_CHAIN_LENGTH = 30


@functools.lru_cache(maxsize=1)
def _aligner():
    from Bio import Align
    from Bio.Align import substitution_matrices

    aligner = Align.PairwiseAligner(mode="local", open_gap_score=-11.0, extend_gap_score=-1.0)
    aligner.substitution_matrix = substitution_matrices.load("BLOSUM62")
    return aligner


def _clean(sequence: str) -> str:
    # BLOSUM62 knows the 20 amino acids and B, Z, X, *; anything else (U, O, gaps) becomes X.
    allowed = set("ARNDCQEGHILKMFPSTWYVBZX")
    return "".join(c if c in allowed else "X" for c in sequence.upper())


def sequence_identity(a: str, b: str) -> float:
    """Identity of two chains as defined in the module docstring, in [0, 1].

    Args:
        a, b: one-letter amino-acid sequences.

    Returns:
        0.0 when either is empty.
    """
    a, b = _clean(a), _clean(b)
    if not a or not b:
        return 0.0
    alignments = _aligner().align(a, b)
    if alignments.score <= 0:
        return 0.0
    identities = alignments[0].counts().identities
    return identities / min(len(a), len(b))


@dataclass(frozen=True)
class SimilarHit:
    """A corpus chain at or above the identity threshold to a query chain.

    Attributes:
        corpus_index: index of the corpus sequence in the list given to `find_similar`.
        query_index: index of the query sequence.
        identity: the identity, in [0, 1].
    """

    corpus_index: int
    query_index: int
    identity: float


def _best_hit(args: tuple[str, tuple[str, ...], float]) -> tuple[int, float] | None:
    sequence, queries, threshold = args
    best: tuple[int, float] | None = None
    for index, query in enumerate(queries):
        value = sequence_identity(sequence, query)
        if value >= threshold and (best is None or value > best[1]):
            best = (index, value)
    return best


def find_similar(corpus: Sequence[str], queries: Sequence[str], threshold: float, *, workers: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> list[SimilarHit]:
    """Every corpus sequence whose identity to some query reaches ``threshold`` (its best query).

    All pairs of chains of at least `MIN_CHAIN_LENGTH` residues are aligned (no heuristic
    prefilter, so no such pair at or above the threshold is missed); identical sequences are
    aligned once.

    Args:
        corpus: chain sequences to test.
        queries: chain sequences to keep away from.
        threshold: identity in [0, 1], e.g. 0.3.
        workers: processes (default: all CPUs; 1 runs in this process), started by a fork
            server (a script calling this needs an ``if __name__ == "__main__":`` guard).
        on_progress: called with (corpus sequences done, total).

    Returns:
        One `SimilarHit` per corpus sequence at or above the threshold, in corpus order.
    """
    unique = list(dict.fromkeys(s for s in corpus if len(s) >= MIN_CHAIN_LENGTH))
    unique_queries = tuple(dict.fromkeys(q for q in queries if len(q) >= MIN_CHAIN_LENGTH))
    if not unique or not unique_queries:
        return []
    workers = workers or os.cpu_count() or 1
    jobs = [(s, unique_queries, threshold) for s in unique]
    results: list[tuple[int, float] | None] = []
    if workers == 1 or len(jobs) * len(unique_queries) < 2000:
        for job in jobs:
            results.append(_best_hit(job))
            if on_progress:
                on_progress(len(results), len(jobs))
    else:
        import multiprocessing

        # forkserver: a fork of a process whose threads hold locks (BLAS, torch) can hang
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
            for result in pool.map(_best_hit, jobs, chunksize=4):
                results.append(result)
                if on_progress:
                    on_progress(len(results), len(jobs))
    best = dict(zip(unique, results))
    query_position = {q: i for i, q in reversed(list(enumerate(queries)))}
    hits = []
    for index, sequence in enumerate(corpus):
        found = best.get(sequence)
        if found is not None:
            hits.append(SimilarHit(index, query_position[unique_queries[found[0]]], found[1]))
    return hits
