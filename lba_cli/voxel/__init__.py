"""The voxelizer: atoms -> exact hard-sphere occupancy grids, batched, on any torch device.

`occupancy` holds the grid geometry and the fill rule; `sphere_tables` the tabulated volume
fractions it reads; `_cpu_kernel` the compiled CPU loop; `rotations` the random rotations used
for augmentation. The public API is re-exported here.
"""

from lba_cli.voxel.occupancy import make_channel_lookup, voxel_centers_A, voxelize, voxelize_batch
from lba_cli.voxel.rotations import axis_angle_rotation, random_rotation

__all__ = ["make_channel_lookup", "voxel_centers_A", "voxelize", "voxelize_batch", "random_rotation",
           "axis_angle_rotation"]
