"""Loading a pretraining run for evaluation: its checkpoint's config, weights and flow stage."""
from __future__ import annotations

from pathlib import Path

import torch

from motionclr.config import Config, _apply, config_from_dict, parse_override

# Overrides under these sections choose other data: the stage is then looked up afresh.
DATA_SECTIONS = ("data.", "decode.", "flow.", "pipeline.")


def run_config(ckpt: dict, overrides: list[str] | None = None) -> Config:
    """The config the checkpoint was trained with, then ``overrides`` on top.

    Not ``config.yaml``: that file may describe a later, refused or unfinished attempt;
    the checkpoint's copy is the one its weights were trained under.
    """
    cfg = config_from_dict(ckpt["config"])
    for o in overrides or []:
        _apply(cfg, *parse_override(o))
    return cfg


def run_stage(cfg: Config, ckpt: dict, overrides: list[str] | None = None) -> Path:
    """The flow stage to evaluate on: the one the checkpoint trained on (found where it was,
    or under ``data.cache`` by its ``flow-<hash>`` name when the cache moved), unless an
    override under ``data.``/``decode.``/``flow.``/``pipeline.`` other than ``data.cache``
    asks for other data: that data's stage is then looked up as ``pretrain`` would."""
    from motionclr.pipeline.stages import find_flow_stage
    recorded = ckpt.get("stage")
    chose = {o.partition("=")[0].strip() for o in overrides or []}
    chose = {k for k in chose if k.startswith(DATA_SECTIONS)}
    if not recorded or chose - {"data.cache"}:
        return find_flow_stage(cfg)
    here = Path(recorded)
    moved = Path(cfg.data.cache) / cfg.data.dataset / here.name  # a cache copied elsewhere
    for cand in ([] if chose else [here]) + [moved]:
        if (cand / "manifest.json").is_file():
            return cand
    if chose:  # data.cache points elsewhere, without this stage: look for a matching one
        return find_flow_stage(cfg)
    raise FileNotFoundError(
        f"the flow stage this run trained on is not there ({here}); point at the cache that "
        f"holds {here.name} with data.cache=..., or evaluate on other data with "
        f"data.root=... (its flow stage must be finished)")


def load_run(run: str | Path, overrides: list[str] | None = None,
             device: str = "auto") -> tuple[Config, torch.nn.Module, dict]:
    """(config, method with trained weights in eval mode, metadata).

    The checkpoint's config is the base; ``overrides`` (e.g. ``eval.num_clips=5``) apply on
    top. Checkpoints are loaded with ``weights_only=True``: a file that is not a motionclr
    checkpoint is refused with a clear error instead of being unpickled. ``device`` is
    ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; metadata: ``device``
    (resolved), ``stage`` (``run_stage``), ``epoch`` (0-based index of the last finished
    epoch), ``epochs`` (epochs trained, counted from 1 as the progress bar counts them),
    ``step`` (the last training iteration), ``checkpoint``, ``checkpoint_mtime``.
    """
    from motionclr import provenance
    from motionclr.devices import resolve_device
    from motionclr.train.checkpoint import load_weights, read_checkpoint
    from motionclr.train.methods import build_method
    run = Path(run)
    ckpt_path = run / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"no checkpoint.pt in {run}: pretrain first (make pretrain)")
    dev = resolve_device(device)
    ckpt = read_checkpoint(ckpt_path)
    cfg = run_config(ckpt, overrides)
    stage = run_stage(cfg, ckpt, overrides)
    model = build_method(cfg)
    load_weights(model, ckpt["model"], ckpt_path)
    model.to(dev).eval()
    epoch = int(ckpt["epoch"])
    provenance.record(run, "eval", {"device": str(dev), "stage": str(stage),
                                    "overrides": list(overrides or [])})
    return cfg, model, {"epoch": epoch, "epochs": epoch + 1,
                        "step": int(ckpt.get("step", epoch + 1)) - 1,
                        "stage": stage, "trained_stage": ckpt.get("stage"), "device": dev,
                        "checkpoint": str(ckpt_path),
                        "checkpoint_mtime": ckpt_path.stat().st_mtime}
