"""Offline stages: decode -> flow -> pack into HDF5 shards -> motion index; all cached."""
