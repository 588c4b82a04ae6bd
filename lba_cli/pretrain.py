"""`lba pretrain`: neighbor-location pre-training of an encoder on protein structures.

Preparing a run: the structures become a corpus (`lba_cli.corpus`; a corpus file is used as
it is, folders and files are read into a temporary one), structures are left out by id
(``--exclude-ids``) and by sequence identity to the val/test proteins of downstream data
files (``--exclude-similar-to``), the rest is split by structure id into training and
validation structures, and the shortcut balance is fitted on pilot pairs from the training
structures. Every left-out structure is recorded in the run's log with its reason.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lba_cli.config import GridConfig, NeighborConfig, RunConfig, config_to_dict, read_exclude_ids  # noqa: F401
from lba_cli.corpus import Corpus, build_corpus, is_corpus_file
from lba_cli.devices import autocast_context
from lba_cli.distributed import DistContext, init_distributed, shutdown_distributed, unwrap
from lba_cli.errors import ConfigError, DataError
from lba_cli.loaders import make_loader
from lba_cli.models import create_model, resolve_model_config
from lba_cli.neighbors import NeighborPairs, PairSampler, fit_balance, split_structures, worst_overlap_A
from lba_cli.optim import make_optimizer
from lba_cli.runs import Run, RunStore, utc_now
from lba_cli.seeding import Stream, sample_rng, seed_everything
from lba_cli.train import NullReporter, Reporter, TaskBase, fit
from lba_cli.voxel import voxelize_batch

__all__ = ["NeighborTask", "pretrain", "read_exclude_ids", "prepare_pretrain", "open_corpus", "exclude_similar"]

_PAIR_PREFIXES = ("home_", "neighbor_")
PILOT_STRUCTURES = 500


class NeighborTask(TaskBase):
    """Cross-entropy over the 6 faces; accuracy (chance 1/6) on fixed validation pairs."""

    def _loader(self, dataset: NeighborPairs, epoch: int, skip: int = 0, shard: bool = False):
        train = self.config.train
        return make_loader(dataset, train.batch_size, shuffle=False, seed=train.seed, epoch=epoch,
                           num_workers=train.num_workers, prefixes=_PAIR_PREFIXES, skip_batches=skip,
                           rank=self.ctx.rank if shard else 0, world_size=self.ctx.world_size if shard else 1,
                           merge_single_last=shard)  # training batches only: validation runs in eval mode

    def train_batches(self, epoch: int, skip_batches: int = 0):
        return self._loader(self.train_set, epoch, skip_batches, shard=True)  # pairs are fresh and random already

    def prepare_train(self, model: nn.Module, epoch: int) -> None:
        pass

    def _grids(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        d = self.device
        return voxelize_batch(batch[prefix + "xyz_A"].to(d, non_blocking=True), batch[prefix + "channel"].to(d),
                              batch[prefix + "is_protein"].to(d), self.config.grid)

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        home, neighbor = self._grids(batch, "home_"), self._grids(batch, "neighbor_")
        with autocast_context(self.device):
            return model(home, neighbor).float()

    def train_step(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        labels = batch["label"].to(self.device)
        logits = self._logits(model, batch)
        loss = F.cross_entropy(logits, labels)
        correct = float((logits.argmax(1) == labels).sum())
        n = len(labels)
        return loss, n, {"accuracy": (correct, n), **self._controls(batch, n)}

    @staticmethod
    def _controls(batch: dict[str, torch.Tensor], n: int) -> dict[str, tuple[float, int]]:
        """Hits of the rules with no learning (see `lba_cli.neighbors`) on the same pairs."""
        labels = batch["label"]
        return {"shortcut_accuracy": (float((batch["centroid_rule"] == labels).sum()), n),
                "slab_shortcut_accuracy": (float((batch["slab_rule"] == labels).sum()), n)}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        loss_sum, correct, count = 0.0, 0.0, 0
        controls: dict[str, float] = {}
        for batch in self._loader(self.val_set, 0):
            labels = batch["label"].to(self.device)
            logits = self._logits(model, batch)
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += float((logits.argmax(1) == labels).sum())
            count += len(labels)
            for name, (hits, _) in self._controls(batch, len(labels)).items():
                controls[name] = controls.get(name, 0.0) + hits
        model.train(was_training)
        return {"val/loss": loss_sum / count, "val/accuracy": correct / count,
                **{f"val/{name}": hits / count for name, hits in controls.items()}}


@dataclasses.dataclass
class _Prepared:
    config: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: NeighborTask
    device: torch.device
    ctx: DistContext
    notes: dict[str, Any]


def _remove_when_done(owner: Any, folder: str) -> None:
    """Delete a temporary corpus folder once ``owner`` is gone, from the process that made it only."""
    pid = os.getpid()

    def remove() -> None:
        if os.getpid() == pid:  # never from a forked DataLoader worker
            shutil.rmtree(folder, ignore_errors=True)

    weakref.finalize(owner, remove)


def open_corpus(structures: list[Path], grid: GridConfig, task: NeighborConfig,
                workers: int | None = None) -> tuple[Corpus, list[tuple[str, str]]]:
    """The run's corpus: a corpus file as it is, or files and folders read into a temporary one.

    Args:
        structures: one corpus file, or structure files, folders and whole-protein `lba voxelize` files.
        grid: the views' size (zones are found for it).
        task: padding range and density threshold.
        workers: reading processes when a corpus is built.

    Returns:
        The corpus, and (source, reason) for every structure the build left out.

    Raises:
        ConfigError: when a corpus file was built for other views, a smaller padding range or
            a lower density threshold than the run's, or is mixed with other sources.
        DataError: see `lba_cli.corpus.build_corpus`.
    """
    from lba_cli.zones import ZoneSettings

    if grid.keep_hydrogens or grid.keep_water:
        raise ConfigError("pre-training corpora hold heavy atoms only\nexpected: no --keep-hydrogens / --keep-water")
    corpora = [p for p in structures if is_corpus_file(p)]
    if corpora and len(structures) > 1:
        raise ConfigError(f"--structures: give one corpus file alone, or structure files and folders\n"
                          f"got {len(structures)} sources, {len(corpora)} of them corpora")
    if corpora:
        corpus = Corpus(corpora[0])
        zones = corpus.settings
        problems = []
        if abs(zones.view_size_A - grid.box_size_A) > 1e-6:
            problems.append(f"zones were found for {zones.view_size_A:g} Å views; this run's views are "
                            f"{grid.box_size_A:g} Å (--box-size x --resolution)")
        if zones.max_pad_A + 1e-6 < task.pad_max_A:
            problems.append(f"zones were tested up to {zones.max_pad_A:g} Å padding; this run pads up to "
                            f"{task.pad_max_A:g} Å")
        if task.min_density_per_nm3 + 1e-6 < zones.min_density_per_nm3:
            problems.append(f"zones need {zones.min_density_per_nm3:g} atoms/nm³; this run asks for only "
                            f"{task.min_density_per_nm3:g}")
        if problems:
            raise ConfigError(f"corpus {corpus.path} does not fit this run:\n" + "\n".join(problems) +
                              "\ndo: rebuild it with lba corpus --box-size/--resolution/--max-pad/--min-density")
        return corpus, []
    folder = tempfile.mkdtemp(prefix="lba-corpus-")
    settings = ZoneSettings(view_size_A=grid.box_size_A, max_pad_A=task.pad_max_A,
                            min_density_per_nm3=task.min_density_per_nm3)
    try:
        report = build_corpus(structures, Path(folder) / "corpus.h5", settings, workers=workers)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    corpus = Corpus(report.output)
    _remove_when_done(corpus, folder)
    return corpus, report.skipped


def exclude_similar(corpus: Corpus, members: np.ndarray, data_files: list[Path], max_identity: float,
                    workers: int | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Leave out structures with a chain similar to a val/test protein of downstream data files.

    Args:
        corpus: the corpus.
        members: int array of corpus indices still in play.
        data_files: `lba voxelize` files whose val and test proteins must not be pre-trained on.
        max_identity: threshold (see `lba_cli.identity`).
        workers: alignment processes.

    Returns:
        The members kept, and (source, reason) for every structure left out: its most similar
        chain's identity and the complex and split it matched; structures without any chain
        sequence are left out too, since they cannot be checked.

    Raises:
        DataError: when a data file holds no chain sequences (written by an older lba).
    """
    from lba_cli.data.grids_h5 import read_chain_sequences
    from lba_cli.identity import MIN_CHAIN_LENGTH, find_similar

    queries: list[str] = []
    owners: list[str] = []
    for path in data_files:
        ids, split, sequences = read_chain_sequences(path)
        for complex_id, part, chains in zip(ids, split, sequences):
            if part in ("val", "test"):
                queries.extend(chains)
                owners.extend([f"{complex_id} ({part} split of {Path(path).name})"] * len(chains))
    sequences = corpus.read_sequences()
    flat, owner_of = [], []
    for index in members:
        flat.extend(sequences[index])
        owner_of.extend([int(index)] * len(sequences[index]))
    best: dict[int, tuple[float, str]] = {}
    for hit in find_similar(flat, queries, max_identity, workers=workers):
        structure = owner_of[hit.corpus_index]
        if hit.identity > best.get(structure, (-1.0, ""))[0]:
            best[structure] = (hit.identity, owners[hit.query_index])
    kept, left_out = [], []
    for index in members:
        index = int(index)
        if index in best:
            identity, owner = best[index]
            left_out.append((corpus.sources[index], f"sequence identity {identity:.2f} >= {max_identity:g} to "
                                                    f"{owner}: excluded by --exclude-similar-to"))
        elif not any(len(chain) >= MIN_CHAIN_LENGTH for chain in sequences[index]):
            left_out.append((corpus.sources[index], f"no chain of {MIN_CHAIN_LENGTH}+ residues to check against "
                                                    "--exclude-similar-to"))
        else:
            kept.append(index)
    return np.array(kept, dtype=np.int64), left_out


def prepare_pretrain(config: RunConfig) -> _Prepared:
    """Build the corpus, exclusions, splits, shortcut balance, model, optimizer and task of a run.

    Raises:
        DataError: when no structure can be read or too few remain. ConfigError: on invalid settings.
    """
    train = config.train
    task = config.neighbor
    ctx, device = init_distributed(train.device)
    seed_everything(train.seed, train.deterministic)
    corpus, skipped = open_corpus([Path(p) for p in config.structures], config.grid, task)
    members = np.arange(len(corpus))
    exclude_ids = frozenset(config.exclude_ids)
    if exclude_ids:
        stems = np.array([Path(s.split("#")[0]).name.split(".")[0].lower() for s in corpus.sources])
        hit = np.array([n in exclude_ids or st in exclude_ids for n, st in zip(corpus.names, stems)], dtype=bool)
        skipped += [(corpus.sources[i], "excluded by --exclude-ids") for i in np.flatnonzero(hit)]
        matched = set(corpus.names[hit]) | set(stems[hit])
        unmatched = sorted(exclude_ids - matched)
        if unmatched:
            skipped.append(("--exclude-ids", f"{len(unmatched)} of {len(exclude_ids)} ids match no structure "
                                             f"(e.g. {', '.join(unmatched[:5])}); ids are lower-case PDB codes or "
                                             "file stems"))
        members = members[~hit]
    num_similar = 0
    if config.exclude_similar_to:
        members, similar = exclude_similar(corpus, members, [Path(p) for p in config.exclude_similar_to],
                                           task.max_identity)
        skipped += similar
        num_similar = len(similar)
    if not len(members):
        raise DataError("no pre-training structure is left after the exclusions\n" +
                        "\n".join(f"{p}: {r}" for p, r in skipped[:10]))
    train_part, val_part = split_structures(corpus.names[members], task.val_fraction, train.seed)
    train_members, val_members = members[train_part], members[val_part]
    train_sampler = PairSampler(corpus, train_members, config.grid, task.min_density_per_nm3)
    val_sampler = PairSampler(corpus, val_members, config.grid, task.min_density_per_nm3)
    train_balance = val_balance = None
    if task.balance_shortcut:
        # Pilot pairs come from a random subset of at most PILOT_STRUCTURES training
        # structures: it fits in the read cache, so start-up does not grow with the corpus.
        pilot_members = train_members
        if len(pilot_members) > PILOT_STRUCTURES:
            rng = sample_rng(train.seed, Stream.PILOT, 2, 0)
            pick = rng.choice(len(pilot_members), PILOT_STRUCTURES, replace=False)
            pilot_members = pilot_members[np.sort(pick)]
        pilot = PairSampler(corpus, pilot_members, config.grid, task.min_density_per_nm3)
        train_balance = fit_balance(pilot, task, train.seed, task.pilot_pairs, train=True)
        val_balance = fit_balance(pilot, task, train.seed, task.pilot_pairs, train=False)
    config = dataclasses.replace(config, model=resolve_model_config(config.model))
    model = create_model(config.model, config.grid.num_channels, "neighbor").to(device)
    optimizer = make_optimizer([(model.parameters(), 1.0)], train)
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    task_obj = NeighborTask(NeighborPairs(train_sampler, config.grid, task, train.seed, True, train_balance),
                            NeighborPairs(val_sampler, config.grid, task, train.seed, False, val_balance),
                            config, device, ctx)
    task_obj.check_batches(unwrap(model))
    zones = corpus.num_zones()
    notes = {"corpus": str(corpus.path) if not str(corpus.path).startswith(tempfile.gettempdir()) else "(temporary)",
             "num_structures": int(len(members)), "num_train_structures": int(len(train_members)),
             "num_val_structures": int(len(val_members)), "num_train_zones": int(zones[train_members].sum()),
             "num_val_zones": int(zones[val_members].sum()), "num_skipped_structures": len(skipped),
             "num_excluded_similar": num_similar, "skipped": skipped, "warnings": [], "balance": []}
    overlap = worst_overlap_A(config.grid.box_size_A, task.pad_min_A, task.angle_deg)
    if overlap > 0:
        notes["warnings"].append(
            f"the views can overlap: turned by up to {task.angle_deg:g}°, the neighbour view can reach up to "
            f"{overlap:.1f} Å into the home view at padding {task.pad_min_A:g} Å (view edge "
            f"{config.grid.box_size_A:g} Å); "
            "the two grids then share atoms")
    for name, balance in (("training", train_balance), ("validation", val_balance)):
        if balance is not None:
            notes["balance"].append(f"{name} pairs: {balance.describe()}")
    return _Prepared(config, model, optimizer, task_obj, device, ctx, notes)


def pretrain(config: RunConfig, store: RunStore, reporter: Reporter | None = None) -> Run | None:
    """Run neighbor-location pre-training and record it in ``store``.

    Args:
        config: a ``pretrain`` run configuration (structures, grid, model, task, training).
        store: the run store.
        reporter: progress sink (default: none).

    Returns:
        The finished run (None on torch.distributed ranks other than 0); its ``best``
        checkpoint holds the encoder for ``lba finetune --init``.

    Raises:
        DataError: when no structure can be read.
        ConfigError: on invalid settings.
    """
    prepared = prepare_pretrain(config)
    ctx, notes = prepared.ctx, prepared.notes
    reporter = reporter if (reporter is not None and ctx.is_main) else NullReporter()
    config_dict: dict[str, Any] = config_to_dict(prepared.config)
    run = store.create_run(config_dict) if ctx.is_main else None
    if run is not None:
        run.update_status(world_size=ctx.world_size,
                          **{k: v for k, v in notes.items() if k not in ("skipped", "warnings", "balance")},
                          excluded_similar=[{"source": p, "reason": r} for p, r in notes["skipped"]
                                            if "--exclude-similar-to" in r])
        run.log(f"pretrain on {notes['num_structures']} structures ({notes['num_train_structures']} train, "
                f"{notes['num_val_structures']} val; {notes['num_train_zones']} / {notes['num_val_zones']} zones), "
                f"{notes['num_skipped_structures']} left out, {notes['num_excluded_similar']} of them by sequence "
                "identity")
        for path, reason in notes["skipped"]:
            run.log(f"left out {path}: {reason}")
        for line in notes["balance"]:
            run.log(line)
        for line in notes["warnings"]:
            run.log(f"warning: {line}")
    reporter.message(f"{notes['num_structures']} structures ({notes['num_train_structures']} train / "
                     f"{notes['num_val_structures']} val), {notes['num_skipped_structures']} left out"
                     + (f" ({notes['num_excluded_similar']} by sequence identity)"
                        if notes["num_excluded_similar"] else "")
                     + f"; task {prepared.config.neighbor.label}")
    for line in notes["warnings"]:
        reporter.message(f"warning: {line}")
    if prepared.task.batch_note() is not None:
        reporter.message(f"note: {prepared.task.batch_note()}")
        if run is not None:
            run.log(prepared.task.batch_note())
    fit(prepared.model, prepared.task, prepared.optimizer, prepared.config.train, run, config_dict, reporter,
        prepared.device, ctx=ctx)
    if run is not None:
        run.update_status(status="completed", finished_at=utc_now())
    shutdown_distributed(ctx)
    return run
