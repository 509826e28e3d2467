"""Method registry: name -> class. A method is built as ``METHODS[name](cfg)``."""
from __future__ import annotations

from motionclr.train.methods.moco import MoCo
from motionclr.train.methods.modist import MoDist
from motionclr.train.methods.mcl import MCL, with_motion_focus
from motionclr.train.methods.mscl import MSCL
from motionclr.train.methods.supervised import Supervised
from motionclr.train.methods.vclr import VCLR

METHODS = {
    "moco": MoCo,
    "modist": MoDist,
    "mscl": MSCL,
    "vclr": VCLR,
    "mcl": MCL,
    # labelled reference (not self-supervised): what the backbone can learn at all
    "supervised": Supervised,
    # Compositions from config alone (docs/combinations.md): motion-focused tubelets and
    # the motion-alignment loss on top of MoDist's / MSCL's terms.
    "modist+mcl": with_motion_focus(MoDist),
    "mscl+mcl": with_motion_focus(MSCL),
}


def build_method(cfg):
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name](cfg)
