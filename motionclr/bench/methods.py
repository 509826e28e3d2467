"""`motionclr bench methods`: every method pretrained with one budget, then retrieval R@k.

Each method (default: moco, modist, mscl, vclr, mcl) is pretrained on the embedded synthetic
dataset with the same budget (``configs/demo.yaml``: backbone, width, epochs, batch, optimiser,
lr, queue, temperature) and its own method parameters (``configs/methods/<name>.yaml``), for
several seeds, and evaluated by retrieval (test queries the train gallery; CoCLR/MSCL
protocol, ``motionclr.eval.retrieval``). The table (mean +- std of R@1 and R@5 over seeds,
gap to MoCo, pretraining seconds) goes into docs/benchmarks.md between
``<!-- bench:methods:start -->`` and ``<!-- bench:methods:end -->``.

Config order: datasets/synthetic.yaml, methods/<name>.yaml, demo.yaml, then ``--set``
overrides; a combined name such as ``mscl+mcl`` uses methods/mscl.yaml unless a file of its
own exists.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from motionclr.bench import write_section

START, END = "<!-- bench:methods:start -->", "<!-- bench:methods:end -->"
DEFAULT_METHODS = ("moco", "modist", "mscl", "vclr", "mcl", "supervised")
# Not self-supervised: trained on the labels, the reference for what the backbone can learn.
REFERENCE = {"supervised": "supervised (labels; reference)"}
KS = (1, 5)


def method_config(method: str, seed: int, epochs: int | None, run: Path, configs: Path,
                  overrides: list[str]):
    from motionclr.config import load_config
    own = configs / "methods" / f"{method}.yaml"
    base = configs / "methods" / f"{method.split('+')[0]}.yaml"
    files = [configs / "datasets" / "synthetic.yaml", own if own.is_file() else base,
             configs / "demo.yaml"]
    over = [f"method.name={method}", f"train.seed={seed}", f"train.run={run}"]
    if method == "supervised":
        from motionclr.datasets.synthetic import CLASSES
        over.append(f"method.params.num_classes={len(CLASSES)}")
    if epochs is not None:
        over.append(f"train.epochs={epochs}")
    return load_config(files, over + list(overrides))


def run_one(cfg, progress: bool) -> dict:
    """Pretrain from scratch (the run directory is cleared) and evaluate retrieval."""
    from motionclr.eval.retrieval import run_retrieval
    from motionclr.pretrain import pretrain
    run = Path(cfg.train.run)
    if run.exists():
        shutil.rmtree(run)  # a leftover checkpoint would be resumed, not retrained
    t0 = time.perf_counter()
    pretrain(cfg, progress=progress)
    seconds = time.perf_counter() - t0
    res = run_retrieval(run, device=cfg.train.device, progress=False)
    rec = {int(k): v for k, v in res["recall"].items()}
    return {"method": cfg.method.name, "seed": cfg.train.seed, "seconds": seconds,
            "recall": {k: rec[k] for k in KS}, "n_query": res["protocol"]["n_query"],
            "n_gallery": res["protocol"]["n_gallery"]}


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per method: mean/std of each R@k (fractions) and mean seconds."""
    out: dict[str, dict] = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == m]
        out[m] = {"seeds": [r["seed"] for r in mine], "r1": [r["recall"][1] for r in mine],
                  "seconds": statistics.fmean(r["seconds"] for r in mine),
                  **{k: _mean_std([r["recall"][k] for r in mine]) for k in KS}}
    return out


def render(summary: dict, cfg, cmd: str, n_query: int, n_gallery: int) -> str:
    import torch
    def pct(ms):
        return f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"

    def gap(m, k):
        if "moco" not in summary or m == "moco":
            return "–"
        return f"{100 * (summary[m][k][0] - summary['moco'][k][0]):+.1f}"
    seeds = max(len(s["seeds"]) for s in summary.values())
    lines = [
        "## Methods on the synthetic dataset (same budget)", "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"device {cfg.train.device}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
        f"Budget for every method: backbone {cfg.model.backbone} (width {cfg.model.width}), "
        f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, {cfg.train.optimizer} lr "
        f"{cfg.train.lr} per 256, clips {cfg.clip.clip_len}x{cfg.clip.crop}² stride "
        f"{cfg.clip.stride}, queue {cfg.method.queue_size}, τ {cfg.method.temperature}, "
        f"key momentum {cfg.method.momentum} (cosine to 1); "
        f"{seeds} seed(s). Retrieval: {n_query} test queries, {n_gallery} train gallery, "
        f"features centred, cosine, {cfg.eval.num_clips} clips per video.", "",
        "| method | R@1 (%) | R@5 (%) | ΔR@1 vs moco | ΔR@5 vs moco | R@1 per seed | "
        "pretrain s | seeds |",
        "|---|---|---|---|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {REFERENCE.get(m, m)} | {pct(s[1])} | {pct(s[5])} | {gap(m, 1)} | {gap(m, 5)} | "
                     f"{' / '.join(f'{100 * x:.1f}' for x in s['r1'])} | "
                     f"{s['seconds']:.0f} | {','.join(map(str, s['seeds']))} |")
    lines += ["", "Mean ± sample standard deviation over seeds; Δ: difference of the means in "
              "points. Read a Δ together with the two standard deviations; one test query is "
              f"{100 / n_query:.1f} points of R@k. Chance R@1 is 12.5 % (8 balanced classes). "
              "The supervised row uses the labels (same backbone, clips, augmentation and "
              "epochs): the reference for what this budget can learn from RGB at all."]
    return "\n".join(lines)




def parse(argv):
    ap = argparse.ArgumentParser(prog="motionclr bench methods",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1 per method")
    ap.add_argument("--epochs", type=int, default=80, help="the budget (configs/demo.yaml: 12)")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated")
    ap.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update")
    ap.add_argument("--workdir", default="runs/bench-methods", help="run directories")
    ap.add_argument("--configs", default="configs", help="the configs/ directory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--momentum", default="0.99",
                    help="key-encoder momentum shared by every method (MoCo's); the papers' "
                         "0.994-0.999 barely move the key encoder in a few dozen steps. "
                         "'method' keeps each method's own value")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run (e.g. data.root=... data.cache=...)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the section from <workdir>/results.json of an earlier run "
                         "with the same options (no training)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from motionclr.datasets.synthetic import generate, is_current
    from motionclr.pipeline.flow_stage import run_flow_stage
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parse(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    over = [f"train.device={args.device}", *args.set]
    if args.momentum != "method":
        over.insert(0, f"method.momentum={float(args.momentum)}")
    work, configs = Path(args.workdir), Path(args.configs)
    cfg0 = method_config(methods[0], 0, args.epochs, work / "x", configs, over)
    if args.render_only:
        saved = json.loads((work / "results.json").read_text())
        rows = [{**r, "recall": {int(k): v for k, v in r["recall"].items()}}
                for r in saved["rows"]]
        body = render(summarise(rows), cfg0, saved["command"].strip(), rows[0]["n_query"],
                      rows[0]["n_gallery"])
        write_section(Path(args.out), body, "methods")
        print(body)
        return 0
    # A dataset of this generator version is used as it is (whatever its size); none, or
    # an older version's videos, get the default dataset written.
    if not is_current(cfg0.data.root):
        generate(Path(cfg0.data.root), seed=0)
    run_flow_stage(cfg0, progress=not args.quiet)  # shared by every run (cached)
    rows = []
    for m in methods:
        for seed in range(args.seeds):
            cfg = method_config(m, seed, args.epochs, work / f"{m}-s{seed}", configs, over)
            r = run_one(cfg, progress=not args.quiet)
            rows.append(r)
            print(f"{m} seed {seed}: R@1 {100 * r['recall'][1]:.1f} R@5 "
                  f"{100 * r['recall'][5]:.1f} ({r['seconds']:.0f}s)", flush=True)
    summary = summarise(rows)
    cmd = "motionclr bench methods " + " ".join(argv)
    body = render(summary, cfg0, cmd.strip(), rows[0]["n_query"], rows[0]["n_gallery"])
    write_section(Path(args.out), body, "methods")
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps({"rows": rows, "command": cmd}, indent=1))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
