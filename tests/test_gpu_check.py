"""benchmarks/gpu_check.py on the CPU: both halves end to end, and the payload's checks.

The GPU itself is checked only on a GPU machine (README, "GPU check"); here the same script
runs with ``--device cpu --tiny``, so that the one call a GPU session makes is known to work.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _payload_module():
    spec = importlib.util.spec_from_file_location("gpu_payload", REPO / "benchmarks" / "gpu_payload.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel with one module ``name`` (``VALUE = 1``)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def _script(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_prepare_then_run_on_the_cpu(tmp_path, tiny_pdbbind, bm5_subset):
    """Both halves as a GPU session runs them, on 8 real complexes and 3 real structures."""
    folder = tmp_path / ".gpu-check"
    make_wheel(folder / "wheels", "lba_probe", "0.1", ("numpy>=1.20",))
    prepared = _script("prepare", "--source", str(tiny_pdbbind), "--structures", str(bm5_subset),
                       "--num-structures", "3", "--dir", str(folder), "--no-download")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert "demo data: 8 complexes" in prepared.stdout and "pre-training structures: 3" in prepared.stdout
    assert "wheel polars==" in prepared.stdout and "(downloads disabled)" in prepared.stdout
    manifest = json.loads((folder / "payload" / "manifest.json").read_text())
    assert list(manifest["groups"]) == ["extra"]
    assert manifest["groups"]["extra"]["requirements"] == {"lba_probe-0.1-py3-none-any.whl": ["numpy>=1.20"]}
    h5_mib = (folder / "payload" / "demo.h5").stat().st_size / 2**20
    assert h5_mib < manifest["payload_mib"] < 64
    assert f"{manifest['payload_mib']:8.2f} MiB  in all (limit 64 MiB)" in prepared.stdout

    out = tmp_path / "out"
    result = _script("run", "--device", "cpu", "--tiny", "--dir", str(folder), "--out", str(out))
    lines = result.stdout.strip().splitlines()
    record = json.loads((out / "gpu_check.json").read_text())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert lines[-1].startswith(f"gpu-check: {record['passed']} passed, 0 failed")
    assert record["passed"] >= 18 and record["errors"] == {}
    figures = record["figures"]
    assert figures["carried_packages"] == "lba_probe 0.1"  # unpacked from site-extra.tar.xz and imported
    assert 0 <= figures["voxelize_max_abs_diff"] < 1e-4
    assert figures["voxelize_torch_cpu_grids_per_s"] > 0 and figures["voxelize_cpu_grids_per_s"] > 0
    assert figures["ratio_torch_cpu_vs_molgrid"] is None and "did not travel" in record["notes"][
        "ratio_torch_cpu_vs_molgrid"]
    assert figures["autocast_features_dtype"] == "float32"
    for key in ("pipeline_vs_model_only", "pretrain_pipeline_vs_model_only"):
        assert 0 < figures[key] < 10
    assert "samples/s" in record["display"] and "loss" in record["display"]
    assert record["verdicts"]["predictions_float32"] == "passed"
    assert record["verdicts"]["torchrun_gloo"] == "passed" and "backend_name: gloo" in record["torchrun_log"]
    assert sum(1 for line in lines if ": " in line) == len(figures) + 1  # one line per figure, then the total


def test_run_without_cuda_says_so_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = _script("run", "--dir", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1 and "no CUDA device" in result.stdout


@pytest.mark.parametrize(("requirement", "problem"), [
    ("numpy>=1.16", None),
    ("lba-probe", None),  # carried
    ('importlib-metadata>=1.0; python_version < "3.8"', None),
    ('pyarrow>=7; extra == "pyarrow"', None),
    ("no-such-package>=1", "no-such-package>=1: neither carried nor on the GPU machine"),
], ids=["on-gpu-machine", "carried", "marker-false", "extra", "missing"])
def test_requirements_of_carried_wheels(tmp_path, requirement, problem):
    payload = _payload_module()
    wheel = make_wheel(tmp_path, "needs", "1.0", (requirement,))
    requirements = {wheel.name: payload.wheel_requirements(wheel)}
    missing = payload.check_requirements(requirements, {"needs", "lba-probe"})
    assert missing == ([f"needs-1.0-py3-none-any.whl requires {problem}"] if problem else [])


def test_payload_size_counts_the_tree_and_the_carried_folder(tmp_path):
    payload_module = _payload_module()
    payload = tmp_path / "payload"
    (payload / "structures").mkdir(parents=True)
    (payload / "big.bin").write_bytes(b"\0" * (3 * 2**20))
    (payload / "structures" / "a.pdb.gz").write_bytes(b"\0" * 2**20)
    sizes = payload_module.payload_sizes(REPO, [payload])
    assert sizes[str(payload / "big.bin")] == 3 * 2**20 and sizes[str(payload / "structures") + "/"] == 2**20
    tree = sizes["working tree"]
    assert 2**18 < tree < 16 * 2**20  # the sources, not .venv or .git
    lines: list[str] = []
    assert payload_module.check_payload(REPO, payload, 64, lines.append) == pytest.approx((tree + 4 * 2**20) / 2**20)
    with pytest.raises(payload_module.PayloadError, match=r"over the device tool's 2 MiB\nlargest: .*big.bin"):
        payload_module.check_payload(REPO, payload, 2, lines.append)
