"""libmolgrid's gridder on the atoms `run.py` or `gpu_check.py` prepared, in its own process.

Usage: python molgrid_bench.py ATOMS.npz REPEATS [cpu|cuda] -> prints one JSON line.
The atoms are already in each box's frame (box centre at the origin), so every grid is
made at centre (0, 0, 0): 21 points per side at 1 A (dimension 20 A), with vector types
(N, C) so that a protein atom fills its element channel and the protein channel, radius as
given, as our voxelizer does. Where torch is installed the atoms go in as torch tensors on
the device, which libmolgrid 0.5 reads beside NumPy 2 (the GPU machine's); without torch
(the virtual environment `run.py` makes) as NumPy arrays, which need NumPy < 2.
"""

import json
import sys
import time

import molgrid
import numpy as np


def main() -> None:
    data = np.load(sys.argv[1])
    repeats = int(sys.argv[2])
    device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
    xyz, types, offsets = data["xyz_A"], data["type_vectors"], data["offsets"]
    radius, size, resolution, channels = (float(data["radius_A"]), int(data["box_size_voxels"]),
                                          float(data["resolution_A"]), int(data["num_channels"]))
    maker = molgrid.GridMaker(resolution=resolution, dimension=(size - 1) * resolution, binary=False,
                              radius_type_indexed=False)
    center = molgrid.float3(0.0, 0.0, 0.0)
    spans = list(zip(offsets[:-1], offsets[1:]))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        molgrid.set_gpu_enabled(device == "cuda")

        def tensor(array):
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        grid_out = torch.zeros((channels, size, size, size), device=device)
        sets = [(tensor(xyz[lo:hi]), tensor(types[lo:hi]), tensor(np.full(hi - lo, radius, np.float32)))
                for lo, hi in spans]

        def sync():
            if device == "cuda":
                torch.cuda.synchronize()
    else:
        grid_out = molgrid.Grid4f(np.zeros((channels, size, size, size), np.float32))
        sets = [(molgrid.Grid2f(np.ascontiguousarray(xyz[lo:hi])), molgrid.Grid2f(np.ascontiguousarray(types[lo:hi])),
                 molgrid.Grid1f(np.full(hi - lo, radius, np.float32))) for lo, hi in spans]

        def sync():
            pass

    for coords, t, r in sets[:10]:  # warm up
        maker.forward(center, coords, t, r, grid_out)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        for coords, t, r in sets:
            maker.forward(center, coords, t, r, grid_out)
    sync()
    elapsed = time.perf_counter() - start
    print(json.dumps({"grids_per_s": repeats * len(sets) / elapsed, "grids": repeats * len(sets), "device": device,
                      "molgrid_version": getattr(molgrid, "__version__", "?")}))


if __name__ == "__main__":
    main()
