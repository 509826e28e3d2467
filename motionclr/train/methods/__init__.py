"""Method registry: name -> class. A method is built as ``METHODS[name](cfg)``."""
from __future__ import annotations

from motionclr.train.methods.moco import MoCo
from motionclr.train.methods.modist import MoDist
from motionclr.train.methods.mscl import MSCL

METHODS = {
    "moco": MoCo,
    "modist": MoDist,
    "mscl": MSCL,
}


def build_method(cfg):
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name](cfg)
