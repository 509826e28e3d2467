"""Whether a cached bench row still describes what its run would be trained with now.

A row of ``results.json`` is keyed by the bench's command-line budget. The YAML configs
(dataset presets, method defaults) are not in that key, so without this check a changed
preset would render old numbers under the new settings. Each row keeps the resolved
config it was trained with (``settings``, flattened to dotted keys); a row is fresh while
every setting it has equals the setting the run would get now. A key the row does not have
(a field added to the config since) is not compared: new fields keep the old behaviour at
their defaults. Code changes are not seen here; ``--rerun`` retrains after those.
"""
from __future__ import annotations

import json
from pathlib import Path

from motionclr.config import _flatten, load_yaml

# where the run was written, not how it was trained
PLACES = ("train.run",)


def settings(cfg_dict: dict) -> dict:
    """Dotted key -> JSON-normal value (tuples become lists) of a resolved config dict."""
    flat = {k: v for k, v in _flatten(cfg_dict) if k not in PLACES}
    return json.loads(json.dumps(flat))


def saved_settings(row: dict, run_dir: Path) -> dict | None:
    """The row's own settings, else those of the run's saved ``config.yaml`` (rows cached
    before rows kept them) when that run is the row's: its ``retrieval.json`` has the row's
    recall (a run directory retrained since belongs to another row). None otherwise."""
    if row.get("settings"):
        return row["settings"]
    path, res = run_dir / "config.yaml", run_dir / "retrieval.json"
    if not (path.is_file() and res.is_file()):
        return None
    recall = json.loads(res.read_text()).get("recall", {})
    if any(abs(recall.get(str(k), -1.0) - v) > 1e-9 for k, v in row["recall"].items()):
        return None
    return settings(load_yaml(path.read_text()) or {})


def changed(old: dict | None, new: dict) -> list[str]:
    """``key: old -> new`` for each shared setting that differs; a reason when the row's
    settings are unknown (such a row is never taken as current)."""
    if old is None:
        return ["settings unknown (no saved config of this run)"]
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(old.keys() & new.keys())
            if old[k] != new[k]]
