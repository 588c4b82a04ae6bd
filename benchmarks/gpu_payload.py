"""What `make gpu-check` takes to a GPU machine that has no network: `make gpu-check-prepare`.

The GPU machine's ``python3`` holds CUDA PyTorch, numpy, scipy, h5py, numba, rich, typer and
pandas, and nothing can be installed there; each call to it carries the working tree plus
named git-ignored folders, 64 MiB in all. This module fills ``.gpu-check/`` (git ignores it):

    .gpu-check/wheels/        the wheels the GPU machine lacks, for CPython 3.12 manylinux
                              x86-64, as pip downloads them (they stay here)
    .gpu-check/payload/       what travels: name it in the device tool's ``carry``
        demo.h5               the 285 demo complexes from `lba voxelize` without the
                              inspection grids (atoms, labels, splits: 2.6 MB instead of 11)
        structures/           32 whole proteins of Docking Benchmark 5 (PDB, gzip; 1.6 MB)
                              for pre-training, with their licence
        site-<group>.tar.xz   one group of those wheels, installed for that Python by pip
                              (``--target``) and packed with xz; the GPU half unpacks them
        manifest.json         packages, versions, requirements and sizes of the payload

Why packed installs and not the wheels: the wheels are zip (deflate) files of 55 MB for
polars and 27 MB for libmolgrid, 82 MB together; xz packs the same files into about 51 MB,
so libmolgrid's GPU grid maker can travel beside polars. A group that would push the payload
over the limit is left behind and the manifest says so (the GPU half then says so too).
Pre-training reads whole structure files, hence gemmi (3 MB): the pocket crops of an
`lba voxelize` file are no corpus (too few dense view pairs, and the test proteins).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAYLOAD_LIMIT_MIB = 64.0
TARGET_PYTHON = "3.12"
# The platform tags of the device tool's README; pip matches each tag exactly.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
MARKER_ENVIRONMENT = {"python_version": TARGET_PYTHON, "python_full_version": "3.12.3", "sys_platform": "linux",
                      "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                      "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
# What the GPU machine's python3 already holds, as far as lba and the carried wheels need it
# (from its image's package list, 2026-11-17). The GPU half checks them again there.
ON_GPU_MACHINE = frozenset({"torch", "numpy", "scipy", "h5py", "numba", "llvmlite", "rich", "typer", "click",
                            "shellingham", "pandas", "pyarrow", "pytest", "packaging", "typing-extensions",
                            "nvidia-ml-py"})


@dataclass(frozen=True)
class Group:
    """Wheels packed and carried together.

    Attributes:
        name: the group's name (``site-<name>.tar.xz``).
        packages: (distribution name, version); None takes the version installed here, so
            the GPU machine runs what the tests ran.
        required: without it the GPU half cannot run; an optional group is left behind
            when it does not fit.
        purpose: what the GPU half uses it for.
    """

    name: str
    packages: tuple[tuple[str, str | None], ...]
    required: bool
    purpose: str


GROUPS = (
    Group("polars", (("polars", None), ("polars-runtime-32", None)), True, "the run store and evaluation"),
    Group("gemmi", (("gemmi", None),), True, "reading the pre-training structures"),
    Group("molgrid", (("molgrid", "0.5.5"), ("pyquaternion", "0.9.9")), False, "libmolgrid's GPU GridMaker"),
)


class PayloadError(Exception):
    """The payload cannot be made or is too large; the message says what to do."""


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _version_here(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def wanted_wheels(group: Group) -> list[tuple[str, str]]:
    """(name, version) of a group's wheels; a package not installed here is left out."""
    pinned = [(name, version or _version_here(name)) for name, version in group.packages]
    return [(name, version) for name, version in pinned if version is not None]


def find_wheel(wheels: Path, name: str, version: str) -> Path | None:
    """The downloaded wheel of ``name==version`` in ``wheels``, if any."""
    stem = f"{_canonical(name).replace('-', '_')}-{version}-"
    return next((p for p in sorted(wheels.glob("*.whl")) if p.name.lower().startswith(stem)), None)


def download_wheel(wheels: Path, name: str, version: str) -> Path:
    """``pip download`` one wheel for CPython 3.12 manylinux x86-64 (no dependencies).

    Raises:
        PayloadError: when pip finds no such wheel.
    """
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", TARGET_PYTHON, "--implementation", "cp", "-d", str(wheels), f"{name}=={version}"]
    for platform in PLATFORMS:
        command[5:5] = ["--platform", platform]
    result = subprocess.run(command, capture_output=True, text=True)
    path = find_wheel(wheels, name, version)
    if result.returncode != 0 or path is None:
        raise PayloadError(f"pip found no wheel of {name}=={version} for CPython {TARGET_PYTHON} manylinux x86-64\n"
                           f"{result.stderr.strip()[-600:]}")
    return path


def wheel_requirements(path: Path) -> list[str]:
    """Requirements of a wheel that apply on the GPU machine (Requires-Dist, markers evaluated)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    needed = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.partition(":")[2].strip())
            if requirement.marker is None or requirement.marker.evaluate(MARKER_ENVIRONMENT):
                needed.append(str(requirement))
    return needed


def check_requirements(requirements: dict[str, list[str]], carried: set[str]) -> list[str]:
    """Requirements met neither by a carried wheel nor by the GPU machine: one line each."""
    from packaging.requirements import Requirement

    missing = []
    for wheel, needs in requirements.items():
        for text in needs:
            name = _canonical(Requirement(text).name)
            if name not in carried and name not in ON_GPU_MACHINE:
                missing.append(f"{wheel} requires {text}: neither carried nor on the GPU machine")
    return missing


def pack_group(wheels: list[Path], archive: Path) -> None:
    """Install ``wheels`` for CPython 3.12 x86-64 into a folder (pip ``--target``) and pack it with xz."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile",
                   "--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp",
                   *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
                   "--target", tmp, *map(str, wheels)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise PayloadError(f"pip could not install {', '.join(p.name for p in wheels)} for CPython "
                               f"{TARGET_PYTHON}:\n{result.stderr.strip()[-600:]}")
        from lba_cli.atomic import atomic_path

        with atomic_path(archive) as partial, tarfile.open(partial, "w:xz", preset=6) as tar:
            for item in sorted(Path(tmp).iterdir()):
                tar.add(item, arcname=item.name)


def make_demo_file(source: Path, destination: Path) -> int:
    """`lba voxelize` the source, then keep everything but the inspection grids.

    The GPU half reads atoms, labels and splits (`lba_cli.data.grids_h5.read_grid_set`); the
    stored fixed-orientation grids are 3/4 of the file and nothing there reads them.

    Returns:
        The number of complexes written.
    """
    import h5py

    from lba_cli.atomic import atomic_path
    from lba_cli.config import GridConfig
    from lba_cli.data.build import build_dataset
    from lba_cli.data.grids_h5 import DATASET_GRIDS

    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.h5"
        report = build_dataset([source], full, GridConfig())
        with h5py.File(full, "r") as src, atomic_path(destination) as out, h5py.File(out, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["gpu_check_note"] = f"made by make gpu-check-prepare; /{DATASET_GRIDS} left out to travel light"
            for name in src:
                if name != DATASET_GRIDS:
                    src.copy(src[name], dst, name=name)
    return sum(report.counts.values())


def copy_structures(source: Path, destination: Path, count: int) -> int:
    """Copy the first ``count`` receptor files (``*_r_u.pdb.gz``, by name) and the licence.

    Returns:
        The number of structures copied.

    Raises:
        PayloadError: when the source holds none.
    """
    import shutil

    files = sorted(source.glob("*_r_u.pdb.gz"))[:count]
    if not files:
        raise PayloadError(f"no *_r_u.pdb.gz structures in {source}\nexpected: Docking Benchmark 5 (proteins_bm5)")
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for path in [*files, *source.glob("LICENSE*")]:
        shutil.copyfile(path, destination / path.name)  # a copy: a link would travel as a bare link
    return len(files)


def travelling_files(repo: Path) -> list[Path]:
    """Files of the working tree the device tool sends: tracked, and untracked but not ignored.

    Raises:
        PayloadError: outside a git checkout.
    """
    result = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PayloadError(f"{repo} is not a git checkout: the device tool sends a checkout's files\n"
                           f"{result.stderr.strip()}")
    paths = {repo / name for name in result.stdout.split("\0") if name}
    return sorted(p for p in paths if p.is_symlink() or p.is_file())


def _size(path: Path) -> int:
    return path.lstat().st_size


def payload_sizes(repo: Path, carried: list[Path]) -> dict[str, int]:
    """Bytes that travel: ``working tree`` and each file under the carried folders."""
    sizes = {"working tree": sum(map(_size, travelling_files(repo)))}
    for folder in carried:
        for entry in sorted(folder.iterdir()):  # one line per file or sub-folder
            files = [p for p in entry.rglob("*") if p.is_file()] if entry.is_dir() else [entry]
            sizes[_shown(entry, repo) + ("/" if entry.is_dir() else "")] = sum(map(_size, files))
    return sizes


def _shown(path: Path, repo: Path) -> str:
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def check_payload(repo: Path, payload: Path, limit_mib: float, say) -> float:
    """Print what travels and its total; fail when the total exceeds the limit.

    Returns:
        The total, MiB.

    Raises:
        PayloadError: over the limit, naming the largest parts.
    """
    sizes = payload_sizes(repo, [payload])
    total = sum(sizes.values()) / 2**20
    for name, size in sizes.items():
        say(f"  {size / 2**20:8.2f} MiB  {name}")
    say(f"  {total:8.2f} MiB  in all (limit {limit_mib:g} MiB)")
    if total > limit_mib:
        largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        raise PayloadError(f"the payload is {total:.2f} MiB, over the device tool's {limit_mib:g} MiB\n"
                           "largest: " + ", ".join(f"{n} ({s / 2**20:.1f} MiB)" for n, s in largest) + "\n"
                           "expected: leave an optional group out, or untracked files out of the checkout")
    return total


def prepare(source: Path, structures: Path, root: Path, *, num_structures: int, download: bool, limit_mib: float,
            say) -> dict:
    """Fill ``root`` (``.gpu-check``): demo data, structures, wheels, packed groups, manifest; check the size.

    Args:
        source: the demo complexes for `lba voxelize`.
        structures: a folder of Docking Benchmark 5 structures.
        num_structures: how many of them to carry.
        root: the folder; ``root/payload`` is what travels.
        download: fetch missing wheels with pip (else use the wheels already in ``root/wheels``).
        limit_mib: the device tool's limit on what travels.
        say: prints one line.

    Returns:
        The manifest written to ``root/payload/manifest.json``.

    Raises:
        PayloadError: a wheel or requirement is missing, or the payload is over the limit.
    """
    wheels_dir, payload = root / "wheels", root / "payload"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    payload.mkdir(parents=True, exist_ok=True)
    for leftover in payload.glob(".*.tmp*"):  # from a killed earlier run: it would travel too
        leftover.unlink()
    count = make_demo_file(source, payload / "demo.h5")
    say(f"demo data: {count} complexes from {source} -> {payload / 'demo.h5'}")
    copied = copy_structures(structures, payload / "structures", num_structures)
    say(f"pre-training structures: {copied} from {structures} -> {payload / 'structures'}")

    found: dict[str, list[Path]] = {}
    for group in GROUPS:
        found[group.name] = []
        for name, version in wanted_wheels(group):
            path = find_wheel(wheels_dir, name, version)
            if path is None and download:
                path = download_wheel(wheels_dir, name, version)
            if path is None:
                say(f"wheel {name}=={version}: not in {wheels_dir} (downloads disabled)")
                continue
            found[group.name].append(path)
            say(f"wheel {path.name}: {_size(path) / 2**20:.2f} MiB")
    extra = [p for p in sorted(wheels_dir.glob("*.whl")) if not any(p in paths for paths in found.values())]
    if extra:  # wheels put there by hand travel too, in their own group
        found["extra"] = extra
    requirements = {p.name: wheel_requirements(p) for paths in found.values() for p in paths}
    carried = {_canonical(p.name.split("-")[0]) for paths in found.values() for p in paths}
    missing = check_requirements(requirements, carried)
    if missing:
        raise PayloadError("\n".join(missing))

    for stale in payload.glob("site-*.tar.xz"):
        if stale.name.removeprefix("site-").removesuffix(".tar.xz") not in found:
            stale.unlink()
    manifest: dict = {"source": str(source), "complexes": count, "structures": copied, "groups": {},
                      "left_behind": {}}
    groups = {g.name: g for g in GROUPS}
    for name, paths in found.items():
        archive = payload / f"site-{name}.tar.xz"
        stamp = [[p.name, _size(p)] for p in paths]
        record = {"wheels": stamp, "requirements": {p.name: requirements[p.name] for p in paths},
                  "purpose": groups[name].purpose if name in groups else "wheels added by hand"}
        previous = _read_json(payload / "manifest.json").get("groups", {}).get(name, {})
        if not paths:
            archive.unlink(missing_ok=True)
            continue
        if not (archive.is_file() and previous.get("wheels") == stamp):
            say(f"packing {name}: {len(paths)} wheels -> {archive.name} (xz; minutes for large wheels)")
            pack_group(paths, archive)
        record["archive_bytes"] = _size(archive)
        manifest["groups"][name] = record
        total = sum(payload_sizes(REPO, [payload]).values()) / 2**20
        required = groups[name].required if name in groups else True
        if total > limit_mib and not required:
            archive.unlink()
            del manifest["groups"][name]
            manifest["left_behind"][name] = f"{groups[name].purpose}: would make the payload {total:.1f} MiB"
            say(f"left behind {name}: the payload would be {total:.1f} MiB, over {limit_mib:g} MiB")
    _write_json(payload / "manifest.json", manifest)
    say("payload (what the device tool sends):")
    manifest["payload_mib"] = check_payload(REPO, payload, limit_mib, say)
    _write_json(payload / "manifest.json", manifest)
    return manifest


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, data: dict) -> None:
    from lba_cli.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
