"""libmolgrid's CPU gridder on the atoms `run.py` prepared; run inside the molgrid venv.

Usage: python molgrid_bench.py ATOMS.npz REPEATS -> prints one JSON line.
The atoms are already in each box's frame (box centre at the origin), so every grid is
made at centre (0, 0, 0): 21 points per side at 1 A (dimension 20 A), with vector types
(N, C) so that a protein atom fills its element channel and the protein channel, radius as
given, as our voxelizer does.
"""

import json
import sys
import time

import molgrid
import numpy as np


def main() -> None:
    data = np.load(sys.argv[1])
    repeats = int(sys.argv[2])
    xyz, types, offsets = data["xyz_A"], data["type_vectors"], data["offsets"]
    radius, size, resolution, channels = (float(data["radius_A"]), int(data["box_size_voxels"]),
                                          float(data["resolution_A"]), int(data["num_channels"]))
    maker = molgrid.GridMaker(resolution=resolution, dimension=(size - 1) * resolution, binary=False,
                              radius_type_indexed=False)
    center = molgrid.float3(0.0, 0.0, 0.0)
    out = np.zeros((channels, size, size, size), np.float32)
    grid_out = molgrid.Grid4f(out)
    sets = []
    for i in range(len(offsets) - 1):
        lo, hi = offsets[i], offsets[i + 1]
        sets.append((molgrid.Grid2f(np.ascontiguousarray(xyz[lo:hi])),
                     molgrid.Grid2f(np.ascontiguousarray(types[lo:hi])),
                     molgrid.Grid1f(np.full(hi - lo, radius, np.float32))))
    for coords, t, r in sets[:10]:  # warm up
        maker.forward(center, coords, t, r, grid_out)
    start = time.perf_counter()
    for _ in range(repeats):
        for coords, t, r in sets:
            maker.forward(center, coords, t, r, grid_out)
    elapsed = time.perf_counter() - start
    print(json.dumps({"grids_per_s": repeats * len(sets) / elapsed, "grids": repeats * len(sets),
                      "molgrid_version": getattr(molgrid, "__version__", "?")}))


if __name__ == "__main__":
    main()
