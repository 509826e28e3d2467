"""The storage layer: the flow stage's on-disk format, written and read only here.

Parts, shards, manifest, chunk offsets and per-frame checksums (``shards``, ``checksums``)
and the fast clip reader (``frame_reader``). It sits at the bottom of the package: it
imports nothing from motionclr but ``errors``, the pipeline writes through it, and
datasets, eval and viz read through it (``tests/test_layering.py`` keeps it so).
"""
from motionclr.storage.checksums import DamagedShardError, FrameSums
from motionclr.storage.frame_reader import FrameReader
from motionclr.storage.shards import (FORMAT_VERSION, StaleFormatError, load_manifest,
                                      read_video)

__all__ = ["DamagedShardError", "FORMAT_VERSION", "FrameReader", "FrameSums",
           "StaleFormatError", "load_manifest", "read_video"]
