"""Typed ``method.params`` of every method: one dataclass per method, checked before any work.

Each method class names its ``Params``; a composition (``mscl+mcl``) merges its parts'
fields. ``parse_params(cls, raw)`` rejects unknown keys (listing the valid ones), coerces
values to the field's type (``"true"`` -> True, ``"0.5"`` -> 0.5) and checks choices, so a
typo such as ``method.params.tubelet_samplr=mcl`` fails at once instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union


def choice(default, choices: tuple, doc: str = ""):
    """A field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": tuple(choices), "doc": doc})


# ----------------------------------------------------------------------------- schemas

@dataclass
class NoParams:
    """MoCo: no method parameters."""


@dataclass
class SupervisedParams:
    num_classes: int = 0  # the dataset's number of classes (required, >= 2)


@dataclass
class MoDistParams:
    flow_encoder: str = choice("r2d18_slim", ("r2d18_slim", "r3d_slim"))
    flow_encoder_args: dict = field(default_factory=dict)  # the flow encoder's kwargs
    flow_norm: str = choice("max", ("max", "none"))


FRA_MODES = ("paper", "release", "release_pipeline", "none")


@dataclass
class MSCLParams(MoDistParams):
    # paper: the rotated flow of the same clip is an extra negative (clip level and LMCL);
    # release: the rotated flow is a positive (MSCL's model code's names);
    # release_pipeline: what MSCL's data pipeline feeds that code; none: no FRA.
    fra: str = choice("paper", FRA_MODES)
    aug_flow_weights: Optional[list] = None  # release modes only; default [1, 1]
    lmcl_weight: float = 1.0
    lmcl_temperature: Optional[float] = None  # default: method.temperature
    lmcl_layer: str = ""  # RGB layer LMCL reads; "" = deepest with T >= 4
    rotate_field: bool = False
    sampler: str = choice("mds", ("mds", "random"))
    mds_max_shift: Optional[int] = None  # default clip_len * stride


@dataclass
class MALParams:
    """MCL's motion-focused tubelets and alignment (shared by MCL and the compositions)."""
    p_motion: float = 0.7
    top_frac: float = 0.5
    motion_crop: bool = True
    mal_weight: float = 1.0
    mal_warmup_weight: float = 2.0
    mal_warmup_epochs: Optional[int] = None  # default train.warmup_epochs
    saliency_layer: str = ""  # a backbone Conv3d; "" = deepest with T' >= 4
    saliency_multiply: str = choice("gradient", ("gradient", "activation"))
    st_temperature: float = 1.0
    temporal_reduce: str = choice("sum", ("sum", "mean"))


@dataclass
class MCLParams(MALParams):
    p_ordered: float = 0.5
    order_weight: Union[float, str] = "linear"  # a number or "linear" ((epoch + 1) / epochs)
    order_normalize: str = choice("mcl", ("mcl", "concat", "item", "frame", "none"))


@dataclass
class MotionFocusParams(MALParams):
    tubelet_sampler: str = choice("mcl", ("mcl", "mds"))


@dataclass
class VCLRParams:
    frames: bool = False
    segment_queue_size: Optional[int] = None  # default method.queue_size
    order_normalize: str = choice("item", ("item", "mcl", "concat", "frame", "none"))
    weights: dict = field(default_factory=dict)  # {inter, intra, segment, order}
    motion_crop: bool = False


def merge(name: str, *schemas: type) -> type:
    """One dataclass with the fields of ``schemas`` (later ones win on a clash)."""
    fields: dict[str, tuple] = {}
    for s in schemas:
        hints = typing.get_type_hints(s)
        for f in dataclasses.fields(s):
            fields[f.name] = (f.name, hints[f.name], f)
    return dataclasses.make_dataclass(name, list(fields.values()))


# ----------------------------------------------------------------------------- parsing

def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        types = [a for a in args if a is not type(None)]
        if len(types) == 1:  # Optional[X]: X's own message
            return _coerce(value, types[0], key)
        for a in types:
            try:
                return _coerce(value, a, key)
            except ValueError:
                pass
        names = " or ".join(a.__name__ for a in types)
        raise ValueError(f"{key}: expected {names}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{key}: expected a boolean, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{key}: expected {tp.__name__}, got {value!r}")
        try:
            out = tp(float(value)) if tp is int else tp(value)
        except ValueError:
            raise ValueError(f"{key}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and float(value) != out:
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        return list(value)
    return value


def parse_params(schema: type, raw: dict | None, method: str) -> Any:
    """``raw`` (``cfg.method.params``) -> an instance of ``schema``; ValueError on an unknown
    key, a value of the wrong type or a value outside the field's choices."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"unknown method.params key(s) {unknown} for method {method!r}; "
                         f"valid: {sorted(fields) or 'none'}")
    hints = typing.get_type_hints(schema)
    kw = {}
    for k, v in raw.items():
        key = f"method.params.{k}"
        kw[k] = _coerce(v, hints[k], key)
        choices = fields[k].metadata.get("choices")
        if choices and kw[k] not in choices:
            raise ValueError(f"{key}={kw[k]!r}; valid: {list(choices)}")
    return schema(**kw)

