"""Method registry: name -> class. A method is built as ``METHODS[name](cfg)``;
``validate_method(cfg)`` checks its config (typed ``method.params``) before any work."""
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


def method_class(cfg):
    name = cfg.method.name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def validate_method(cfg):
    """Check ``cfg.method`` before any work: the name, ``method.params`` against the
    method's typed schema (unknown keys fail and list the valid ones; values are coerced),
    and what the params imply for the model (e.g. LMCL's layer has >= 2 time steps).
    Returns the typed params; raises ValueError with one clear line."""
    cls = method_class(cfg)
    groups = cfg.method.shuffle_bn
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"method.shuffle_bn must be an integer >= 1 (BatchNorm groups; "
                         f"1 = off), got {groups!r}")
    if groups > 1 and cls.uses_keys and cfg.train.batch_size < 2 * groups:
        raise ValueError(f"method.shuffle_bn={groups} needs at least 2 clips per group: "
                         f"train.batch_size={cfg.train.batch_size} < {2 * groups}")
    params = cls.parse_params(cfg)
    cls.check(cfg, params)
    return params


def build_method(cfg):
    return method_class(cfg)(cfg).finish_build()
