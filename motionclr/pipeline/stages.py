"""Locating a finished stage from a config, with or without the raw videos at hand."""
from __future__ import annotations

import json
from pathlib import Path

from motionclr.config import Config


def _usable(stage: Path) -> Path:
    """A finished stage with no video (every one failed) is refused with its first reason."""
    man = json.loads((stage / "manifest.json").read_text())
    if not man.get("videos"):
        failed = man.get("failed", [])
        why = f": {failed[0].get('reason', '')}" if failed else ""
        raise FileNotFoundError(f"the flow stage {stage} packed 0 videos ({len(failed)} "
                                f"failed{why}); fix the cause and run `motionclr flow "
                                "--retry-failed`")
    return stage


def find_flow_stage(cfg: Config) -> Path:
    """The flow-stage directory for ``cfg``.

    With the dataset root present, the directory is recomputed from the inputs (exact).
    Without it (training on a copied cache), a complete stage whose recorded decode/flow
    parameters equal the config's is used.
    """
    from motionclr.datasets.sources import limit_entries, list_videos
    from motionclr.pipeline.cache_admin import touch_used
    from motionclr.pipeline.flow_stage import stage_dir, stage_params

    try:
        entries = list_videos(cfg.data.dataset, cfg.data.root, cfg.data.split,
                              **cfg.data.options)
        exact = stage_dir(cfg, limit_entries(entries, cfg.data.limit))
        if (exact / "manifest.json").is_file():
            touch_used(exact)
            return _usable(exact)
    except FileNotFoundError:
        exact = None
    if exact is not None:
        raise FileNotFoundError(
            f"the flow stage for this config is not finished: {exact} has no manifest.json; "
            f"run `make flow DATASET={cfg.data.dataset}` (or `motionclr flow`) first")
    from motionclr.storage import FORMAT_VERSION
    want = stage_params(cfg)
    base = Path(cfg.data.cache) / cfg.data.dataset
    matches, stale = [], []
    for man in sorted(base.glob("flow-*/manifest.json")):
        if json.loads(man.read_text()).get("format_version") != FORMAT_VERSION:
            stale.append(man.parent)  # an older storage format: never picked silently
            continue
        stage = json.loads((man.parent / "stage.json").read_text()) if (
            man.parent / "stage.json").is_file() else {}
        if all(json.dumps(stage.get(k), sort_keys=True, default=str) ==
               json.dumps(want[k], sort_keys=True, default=str)
               for k in ("decode", "flow", "storage")):
            matches.append(man.parent)
    if len(matches) == 1:
        touch_used(matches[0])
        return _usable(matches[0])
    if len(matches) > 1:
        raise FileNotFoundError(f"several finished flow stages match this config and the "
                                f"dataset root is not there to tell them apart: {matches}")
    if stale:
        raise FileNotFoundError(
            f"only flow stages of an older storage format under {base} ({stale}); run `make "
            f"flow DATASET={cfg.data.dataset}` (or `motionclr flow`) again to write a new one")
    raise FileNotFoundError(
        f"no finished flow stage for this config under {base}; run `make flow "
        f"DATASET={cfg.data.dataset}` (or `motionclr flow`) with the same decode/flow settings")
