"""Reading complexes and structures, and the HDF5 files `lba voxelize` writes."""
