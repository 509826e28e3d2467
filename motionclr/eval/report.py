"""One markdown report per run: every evaluation JSON found in the run, one table.

``make report RUN=...`` -> ``<run>/report.md``: a row per (protocol, setting, metric),
the protocol knobs that matter next to each number, and the run's plots (PNG files).
Missing evaluations are listed, not guessed.
"""
from __future__ import annotations

import json
from pathlib import Path

SOURCES = ("retrieval", "knn", "linear", "finetune")


def load_results(run: str | Path) -> dict[str, dict]:
    """{name: parsed JSON} for each ``<run>/<name>.json`` of ``SOURCES`` that exists."""
    run = Path(run)
    return {n: json.loads((run / f"{n}.json").read_text())
            for n in SOURCES if (run / f"{n}.json").is_file()}


def epochs_trained(result: dict):
    """Epochs behind a result, counted from 1 (older JSONs held the 0-based last epoch)."""
    for key in ("epochs", "pretrain_epochs"):
        if key in result:
            return result[key]
    old = result.get("epoch", result.get("pretrain_epoch"))
    return "?" if old is None else int(old) + 1


def _pct(v) -> str:
    return f"{100 * float(v):.1f}"


def rows(results: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(protocol, setting, metric, value in %) rows, in a fixed order."""
    out = []
    if "retrieval" in results:
        r = results["retrieval"]
        p = r.get("protocol", {})
        setting = (f"{p.get('num_clips', '?')} clips, center={p.get('center', '?')}, "
                   f"{p.get('n_query', '?')} queries / {p.get('n_gallery', '?')} gallery")
        out += [("retrieval", setting, f"R@{k}", _pct(v))
                for k, v in sorted(r["recall"].items(), key=lambda kv: int(kv[0]))]
    if "knn" in results:
        r = results["knn"]
        t = r.get("protocol", {}).get("temperature", "?")
        out += [("kNN", f"k={k}, T={t}", "top-1", _pct(v))
                for k, v in sorted(r["top1"].items(), key=lambda kv: int(kv[0]))]
    if "linear" in results:
        for kind, r in results["linear"]["classifiers"].items():
            hp = ", ".join(f"{a}={b:g}" for a, b in r.get("hparams", {}).items())
            out += [(f"linear ({kind})", hp or "-", m, _pct(r[m])) for m in ("top1", "top5")]
    if "finetune" in results:
        f = results["finetune"]
        p = f.get("protocol", {})
        for preset, r in f["results"].items():
            setting = (f"{preset} ({r.get('clips')} clips x {r.get('crops')} crops), "
                       f"{p.get('aggregate', '?')}-mean, {p.get('recipe', '?')} recipe, "
                       f"{p.get('epochs', '?')} ep")
            out += [("finetune", setting, m, _pct(r[m])) for m in ("top1", "top5")]
    return out


def build_report(run: str | Path) -> str:
    """Markdown for ``run``; also written to ``<run>/report.md``."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"no run directory {run}")
    results = load_results(run)
    head = next(iter(results.values()), {})
    lines = [f"# Evaluation report: {run.name}", ""]
    if head:
        lines += [f"dataset `{head.get('dataset')}`, method `{head.get('method')}`, backbone "
                  f"`{head.get('backbone')}`, {epochs_trained(head)} pretraining epochs", ""]
    table = rows(results)
    if table:
        lines += ["| protocol | setting | metric | value (%) |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table]
    else:
        lines.append("No evaluation results yet: run `make eval-retrieval`, `make eval-linear` "
                     "or `make finetune` first.")
    missing = [n for n in SOURCES if n not in results]
    if missing:
        lines += ["", "Not run: " + ", ".join(f"`{n}.json`" for n in missing)]
    plots = sorted(p.name for p in run.glob("*.png"))
    if plots:
        lines += ["", "## Plots", ""] + [f"- [{p}]({p})" for p in plots]
    text = "\n".join(lines) + "\n"
    from motionclr.pipeline.cache import atomic_write_text
    atomic_write_text(run / "report.md", text)
    return text
