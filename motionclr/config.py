"""Typed configs: dataclass defaults <- YAML file(s) <- dotted command-line overrides.

Unknown keys fail at once with the valid choices; values are coerced to the field's type
(``train.epochs=5`` -> int). The resolved config is saved as ``config.yaml`` in every run.

YAML is read with YAML 1.2's booleans (only ``true``/``false``): in YAML 1.1 ``off``, ``no``
and ``on`` are booleans, which turned ``data.flip=off`` into ``False``. An override of a str
field keeps the text exactly as typed (``data.root=0123`` is the directory "0123").
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataCfg:
    dataset: str = "synthetic"     # a source in motionclr.datasets.sources.SOURCES
    root: str = "data/synthetic"   # dataset root (official layout)
    split: int = 1                 # official split number (UCF101/HMDB51: 1-3)
    cache: str = "cache"           # where stage outputs live, each under a content hash
    limit: int = 0                 # smoke runs: whole classes in label order until >= N videos
    #                                (train and test of each kept class; 0 = all)
    flip: str = "off"              # horizontal flip policy: off | shared | independent
    warm: float = 0.5              # pretrain first reads the shards sequentially into the page
    #                                cache when they fit in this fraction of available memory
    #                                (storage/warm.py: faster warm reads); 0 = off
    direct: str = "auto"           # read clips with O_DIRECT, past the page cache: on | off |
    #                                auto (on for stages > 10x available memory, warm.py)
    options: dict = field(default_factory=dict)  # source keyword args (folder: test_fraction)
    augment: dict = field(default_factory=dict)  # training augmentation (AugmentCfg fields)


@dataclass
class DecodeCfg:
    short_side: int = 128          # resize so the short side is this many pixels (0 = native)
    fps: float = 0.0               # resample to this frame rate (0 = keep the source's)
    timeout: float = 600.0         # seconds per video before ffmpeg is killed
    max_frames: int = 0            # cap decoded frames per video (0 = no cap)


@dataclass
class FlowCfg:
    method: str = "tvl1_torch"     # a key of motionclr.flow.FLOW_METHODS (OpenCV CPU: "tvl1")
    bound: float = 20.0            # clip |flow| to this many pixels before uint8 quantisation
    device: str = "cpu"            # torch device for torch-based estimators
    params: dict = field(default_factory=dict)  # estimator parameters (e.g. {warps: 3})


@dataclass
class PipelineCfg:
    workers: int = 2               # parallel videos (joblib)
    backend: str = "loky"          # joblib backend: loky | threading | ray | dask
    address: str = ""              # ray/dask cluster to join ("" = start a local one)
    shard_mb: int = 1024           # target shard size
    shard: str = ""                # "i/n": process only slice i of n (job arrays)
    compression: str = "none"      # none | lzf | gzip  (for the flow dataset)
    time_phases: int = 2           # shard frames stored phase-major: a stride-P clip is one read


@dataclass
class IndexCfg:
    params: dict = field(default_factory=dict)  # motion_index.IndexParams overrides


@dataclass
class ClipCfg:
    clip_len: int = 16             # frames per clip
    stride: int = 2                # temporal stride between sampled frames
    crop: int = 112                # spatial size fed to the network


@dataclass
class ModelCfg:
    backbone: str = "r3d_18"       # r3d_18 | r2plus1d_18 | s3d | small3d
    width: int = 32                # base width of small3d
    dim: int = 128                 # projection output dimension


@dataclass
class MethodCfg:
    name: str = "moco"             # a key of motionclr.train.methods.METHODS
    temperature: float = 0.07
    queue_size: int = 4096
    momentum: float = 0.99         # key-encoder EMA at the start; cosine-scheduled to 1
    terms: dict = field(default_factory=dict)  # loss-term weights, e.g. {loss_mx: 0.5}
    mask_same_video: bool = True   # a query's own video in the queue is not a negative
    # MoCo's shuffle-BN, emulated per rank: BatchNorm statistics over G slices of the batch
    # and keys encoded from a shuffled batch (train/shuffle_bn.py); 1 = off
    shuffle_bn: int = 1
    params: dict = field(default_factory=dict)  # method-specific extras


@dataclass
class TrainCfg:
    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "sgd"         # sgd | adam
    lr: float = 0.03               # for batch_size 256; scaled linearly with batch size
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    grad_clip: float = 0.0         # 0 = no clipping
    num_workers: int = 2
    seed: int = 0
    device: str = "cpu"
    amp: bool = True               # used on CUDA only
    run: str = ""                  # run directory; default runs/<dataset>-<method>
    log_every: int = 10
    tensorboard: bool = True       # also write the logged values to <run>/tb (TensorBoard)
    knn_every: int = 0             # kNN monitor on eval.gallery -> eval.query every N epochs


@dataclass
class EvalCfg:
    num_clips: int = 10            # uniformly spaced clips per video, features averaged
    crops: int = 1                 # spatial crops per clip: 1 centre | 3 along the long side
    dense: bool = False            # CoCLR's half-overlapping windows instead of num_clips
    clip_l2: bool = False          # L2-normalise each view's feature before averaging (CoCLR)
    layer: str = "backbone_pool"   # feature: backbone_pool | projector (projection head out)
    center: bool = True            # subtract the set's mean feature (CoCLR/MSCL protocol)
    ks: list = field(default_factory=lambda: [1, 5, 10, 20, 50])
    batch_size: int = 16
    query: str = "test"            # subset whose videos query (K400/SSv2: val)
    gallery: str = "train"         # subset searched
    linear: dict = field(default_factory=dict)    # probe knobs: motionclr.eval.linear.DEFAULTS
    finetune: dict = field(default_factory=dict)  # motionclr.eval.finetune.DEFAULTS / RECIPES
    knn: dict = field(default_factory=dict)       # motionclr.eval.knn.DEFAULTS


@dataclass
class Config:
    data: DataCfg = field(default_factory=DataCfg)
    decode: DecodeCfg = field(default_factory=DecodeCfg)
    flow: FlowCfg = field(default_factory=FlowCfg)
    pipeline: PipelineCfg = field(default_factory=PipelineCfg)
    index: IndexCfg = field(default_factory=IndexCfg)
    clip: ClipCfg = field(default_factory=ClipCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    method: MethodCfg = field(default_factory=MethodCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)

    def to_dict(self) -> dict:
        return asdict(self)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false (any case), not yes/no/on/off."""


_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:bool"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def load_yaml(text: str) -> Any:
    """Parse config YAML (files, overrides, saved run configs) with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_Yaml12Loader)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{key}: expected a boolean, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{key}: expected {tp.__name__}, got {value!r}")
        try:
            out = tp(value)
        except ValueError:
            raise ValueError(f"{key}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return out
    if tp is str:
        return "" if value is None else str(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        return list(value)
    return value


def _apply(obj: Any, key: str, value: Any, prefix: str = "",
           origin: dict | None = None, where: str = "") -> None:
    """Set dotted ``key`` on the dataclass tree ``obj``; dict fields accept nested keys.

    ``origin`` (dotted key -> ``where``) records which file or override set each value.
    """
    head, _, rest = key.partition(".")
    names = {f.name: f for f in dataclasses.fields(obj)}
    if head not in names:
        raise KeyError(f"unknown config key {prefix + head!r}; valid keys under "
                       f"{prefix.rstrip('.') or 'the top level'}: {sorted(names)}")
    current = getattr(obj, head)
    hints = typing.get_type_hints(type(obj))
    if dataclasses.is_dataclass(current):
        if rest:
            _apply(current, rest, value, prefix + head + ".", origin, where)
        elif isinstance(value, dict):
            for k, v in value.items():
                _apply(current, k, v, prefix + head + ".", origin, where)
        else:
            raise ValueError(f"{prefix + head}: expected a mapping, got {value!r}")
        return
    if origin is not None:
        origin[prefix + key] = where
    if isinstance(current, dict) and rest:
        d = current
        parts = rest.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
        return
    if rest:
        raise KeyError(f"{prefix + head} is a value, not a section: cannot set {prefix + key!r}")
    setattr(obj, head, _coerce(value, hints[head], prefix + head))


def _field_type(obj: Any, key: str) -> Any:
    """The declared type of dotted ``key``, or None inside a dict field / for unknown keys."""
    head, _, rest = key.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        return None
    current = getattr(obj, head)
    if dataclasses.is_dataclass(current):
        return _field_type(current, rest) if rest else None
    return None if rest else typing.get_type_hints(type(obj))[head]


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*=")


def parse_override(text: str, cfg: Config | None = None) -> tuple[str, Any]:
    """``key=value`` -> (key, value). The value is YAML, except for a str field of ``cfg``,
    which keeps the text as typed (``data.flip=off`` stays "off", ``data.root=007`` "007")."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if cfg is not None and _field_type(cfg, key) is str:
        return key, raw.strip()
    return key, load_yaml(raw) if raw.strip() else ""


def is_config_file(token: str) -> bool:
    return token.lower().endswith((".yaml", ".yml")) and not _KEY.match(token)


def _open_brackets(text: str) -> bool:
    """True while a YAML flow value (``[...]``/``{...}``) is not closed yet."""
    depth = 0
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
    return depth > 0


def split_cli_args(tokens: list[str]) -> tuple[list[str], list[str]]:
    """Command-line words -> (config files, overrides), unambiguously.

    - a word ending in ``.yaml``/``.yml`` (not ``key=...``) is a config file, which must exist;
    - a word starting with ``section.key=`` starts an override;
    - any other word continues the previous override's value, joined by one space: the shell
      (and make's ``ARGS="..."``) split ``method.terms={loss_mx: 0.5, loss_mx_r: 0}`` into
      four words, and this puts it back together. Inside an open ``[``/``{`` every word
      continues the value.
    """
    files: list[str] = []
    overrides: list[str] = []
    for tok in tokens:
        if overrides and _open_brackets(overrides[-1].partition("=")[2]):
            overrides[-1] += " " + tok
        elif _KEY.match(tok):
            overrides.append(tok)
        elif is_config_file(tok):
            if not Path(tok).is_file():
                raise FileNotFoundError(f"config file not found: {tok}")
            files.append(tok)
        elif overrides:
            overrides[-1] += " " + tok
        else:
            raise ValueError(f"{tok!r} is neither a config file (an existing .yaml/.yml path) "
                             "nor an override (section.key=value)")
    return files, overrides


def load_config(paths: list[str | Path] | str | Path | None = None,
                overrides: list[str] | None = None, origin: dict | None = None) -> Config:
    """Defaults, then each YAML file in order, then ``key=value`` overrides.

    ``origin``, when given, is filled with dotted key -> the file path or ``"override"`` that
    set it last (keys absent from it are defaults).
    """
    cfg = Config()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for p in paths or []:
        data = load_yaml(Path(p).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: a config file must hold a mapping")
        for k, v in data.items():
            _apply(cfg, k, v, origin=origin, where=str(p))
    for o in overrides or []:
        _apply(cfg, *parse_override(o, cfg), origin=origin, where="override")
    return cfg


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def describe_config(cfg: Config, origin: dict) -> list[str]:
    """One line per resolved value: ``key: value  # default | <file> | override``."""
    lines = []
    for key, value in _flatten(cfg.to_dict()):
        src, k = "default", key
        while k:
            if k in origin:
                src = origin[k]
                break
            k = k.rpartition(".")[0]
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        lines.append((f"{key}: {text}", src))
    width = min(max(len(a) for a, _ in lines), 56)
    return [f"{a:<{width}}  # {src}" for a, src in lines]


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_from_dict(d: dict) -> Config:
    cfg = Config()
    for k, v in d.items():
        _apply(cfg, k, v)
    return cfg


__all__ = ["Config", "load_config", "save_config", "config_from_dict", "parse_override",
           "split_cli_args", "describe_config", "load_yaml"]
