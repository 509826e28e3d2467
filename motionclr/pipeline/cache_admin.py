"""`motionclr cache ls|gc`: what the cache holds, and removing what is no longer used.

A stage directory is ``<cache>/<dataset>/flow-<hash>/`` (``stage.json`` at its start,
``manifest.json`` when finished, ``index-*.h5`` beside the shards). Its last use is the
mtime of ``.last_used``, touched whenever a run resolves the stage (training, eval, index,
a flow cache hit); stages from before that marker fall back to their newest file's mtime.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LAST_USED = ".last_used"


def touch_used(stage: str | Path) -> None:
    """Record that ``stage`` was used now (best effort: a read-only cache is fine)."""
    try:
        (Path(stage) / LAST_USED).touch()
    except OSError:
        pass


@dataclass
class StageInfo:
    path: Path
    dataset: str
    method: str
    params: dict
    versions: dict
    complete: bool
    ok: int
    failed: int
    size: int
    last_used: float
    indexes: list = field(default_factory=list)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _last_used(path: Path) -> float:
    marker = path / LAST_USED
    if marker.is_file():
        return marker.stat().st_mtime
    return max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()),
               default=path.stat().st_mtime)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def stage_info(path: Path) -> StageInfo:
    stage = _read_json(path / "stage.json")
    man = _read_json(path / "manifest.json")
    params = man.get("params") or stage
    flow = params.get("flow", {})
    parts = path / "parts"
    if man:
        ok, failed = len(man.get("videos", [])), len(man.get("failed", []))
    else:  # unfinished: count the per-video ledger's outcomes so far
        ok = len(list(parts.glob("*.h5"))) if parts.is_dir() else 0
        failed = len(list(parts.glob("*.failed.json"))) if parts.is_dir() else 0
    return StageInfo(path=path, dataset=man.get("dataset") or stage.get("dataset")
                     or path.parent.name, method=flow.get("method", "?"),
                     params={k: params[k] for k in ("decode", "flow", "storage") if k in params},
                     versions=params.get("versions", {}), complete=bool(man), ok=ok,
                     failed=failed, size=_size(path),
                     last_used=_last_used(path),
                     indexes=sorted(p.name for p in path.glob("index-*.h5")))


def list_stages(cache: str | Path) -> list[StageInfo]:
    cache = Path(cache)
    if not cache.is_dir():
        raise FileNotFoundError(f"no cache directory at {cache}")
    if (cache / "stage.json").is_file():       # a stage directory itself
        dirs = [cache]
    else:                                      # a cache root, or one dataset's directory
        dirs = sorted(cache.glob("flow-*")) or sorted(cache.glob("*/flow-*"))
    return [stage_info(d) for d in dirs if d.is_dir()]


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _ago(t: float, now: float) -> str:
    d = max(now - t, 0)
    for unit, s in (("d", 86400), ("h", 3600), ("min", 60)):
        if d >= s:
            return f"{d / s:.0f} {unit} ago"
    return "just now"


def _short_params(info: StageInfo) -> str:
    dec = info.params.get("decode", {})
    flow = info.params.get("flow", {})
    bits = [f"short_side={dec.get('short_side')}"]
    if dec.get("fps"):
        bits.append(f"fps={dec['fps']}")
    if dec.get("max_frames"):
        bits.append(f"max_frames={dec['max_frames']}")
    bits.append(f"bound={flow.get('bound')}")
    if flow.get("params"):
        bits.append("params=" + json.dumps(flow["params"], sort_keys=True,
                                           separators=(",", ":")))
    comp = info.params.get("storage", {}).get("compression")
    if comp and comp != "none":
        bits.append(f"compression={comp}")
    return " ".join(bits)


def format_ls(stages: list[StageInfo], now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    lines = []
    for s in stages:
        state = "complete" if s.complete else "unfinished"
        lines.append(f"{s.path}  {s.dataset}  {s.method}  {_short_params(s)}")
        lines.append(f"    {state}: {s.ok} ok, {s.failed} failed; {_human(s.size)}; "
                     f"last used {_ago(s.last_used, now)}"
                     + (f"; {len(s.indexes)} index file(s)" if s.indexes else ""))
    if not stages:
        lines.append("no stages")
    else:
        lines.append(f"{len(stages)} stage(s), {_human(sum(s.size for s in stages))} in total")
    return lines


def gc_candidates(stages: list[StageInfo], unused_days: float | None,
                  unfinished_days: float, now: float | None = None) -> list[tuple[StageInfo, str]]:
    """Policy: unfinished stages idle for ``unfinished_days`` (a crashed or abandoned run; a
    live run keeps writing its ledger, so it is never idle that long), and, only when asked
    (``unused_days``), finished stages nobody resolved for that many days."""
    now = time.time() if now is None else now
    out = []
    for s in stages:
        idle_days = (now - s.last_used) / 86400
        if not s.complete and idle_days >= unfinished_days:
            out.append((s, f"unfinished, idle {idle_days:.1f} days"))
        elif s.complete and unused_days is not None and idle_days >= unused_days:
            out.append((s, f"unused for {idle_days:.1f} days"))
    return out


def run_gc(cache: str | Path, unused_days: float | None = None, unfinished_days: float = 1.0,
           dry_run: bool = False) -> list[str]:
    victims = gc_candidates(list_stages(cache), unused_days, unfinished_days)
    lines = []
    verb = "would remove" if dry_run else "removed"
    for s, why in victims:
        if not dry_run:
            shutil.rmtree(s.path)
        lines.append(f"{verb} {s.path} ({why}; {_human(s.size)})")
    total = sum(s.size for s, _ in victims)
    lines.append(f"{verb} {len(victims)} stage(s), {_human(total)}"
                 + ("" if victims or unused_days is not None else
                    "; finished stages are kept unless --unused-days N is given"))
    return lines


def note_version_only_change(base: Path, want: dict, root: str) -> str | None:
    """If a finished stage under ``base`` (same dataset root, same decode/flow/storage) differs
    from the requested one only by library versions, print and return a one-line note
    naming the versions that differ, before hours of flow are recomputed."""
    if not base.is_dir():
        return None
    for stage_json in sorted(base.glob("flow-*/stage.json")):
        old = _read_json(stage_json)
        if not (stage_json.parent / "manifest.json").is_file() or old.get("root") != root:
            continue
        same = all(json.dumps(old.get(k), sort_keys=True, default=str)
                   == json.dumps(want.get(k), sort_keys=True, default=str)
                   for k in ("decode", "flow", "storage"))
        ov, nv = old.get("versions", {}), want.get("versions", {})
        if same and ov != nv:
            diff = ", ".join(f"{k} {ov.get(k, 'absent')} -> {nv.get(k, 'absent')}"
                             for k in sorted(set(ov) | set(nv)) if ov.get(k) != nv.get(k))
            note = (f"note: {stage_json.parent} has the same settings but was computed with "
                    f"other library versions ({diff}); recomputing, since these versions can "
                    "change the flow")
            print(note, file=sys.stderr)
            return note
    return None
