"""`motionclr bench methods`: every method pretrained with one budget, then retrieval R@k.

Runs, each pretrained from scratch with the same budget (``configs/demo.yaml``: backbone,
width, epochs, batch, optimiser, lr, queue, temperature; ``--epochs``, ``--momentum``) and
evaluated by retrieval (test queries the train gallery; CoCLR/MSCL protocol,
``motionclr.eval.retrieval``), for seeds 0..``--seeds``-1. Tables:

- ``headline``: moco, modist, mscl, vclr, mcl, supervised on both embedded datasets
  (``synthetic``: camera motion, ``synthetic-objects``: object motion);
- ``mcl`` / ``vclr``: ablations on object motion, each loss term (``method.terms``) and
  each motion-focused sampler or crop (``method.params``) switched off in turn; ``modist``
  and ``mscl``: their RGB-RGB term switched off;
- ``combos``: ``modist+mcl`` and ``mscl+mcl`` against their parts on object motion;
- ``select``: the weight of MoDist's, MSCL's and MCL's RGB instance term on a grid, on
  both datasets, chosen by retrieval among the train split's own groups (the ``val``
  probe, ``motionclr.eval.val_retrieval``), never by the test split.

Every row also carries its probes (``PROBES``): the flow pathway's retrieval, the linear
probe, the cross-modal alignment and the validation score; ``--backfill`` adds missing
ones to cached rows and ``--reprobe`` recomputes named ones.

Every run is cached in ``<workdir>/results.json`` under its key (dataset/method/variant/
seed) and its budget, written after each run with the resolved config it was trained with:
a rerun computes only what is missing or was trained with settings the configs no longer
give (``bench/freshness.py``; such rows are not rendered either), so the bench can be run
in pieces (``--tables``, ``--datasets``, ``--methods``, ``--only-seeds``;
``--list`` shows the plan), also side by side in one workdir (rows are merged under a lock;
the 2-core budget then no longer holds for the seconds columns). Each call rewrites
docs/benchmarks.md between ``<!-- bench:methods:start -->`` and
``<!-- bench:methods:end -->`` from all cached runs of the budget (missing ones marked), as
does ``--render-only`` without training.

Config order: datasets/<dataset>.yaml, methods/<name>.yaml, demo.yaml, the bench's own
overrides, ``--set``, then the variant's overrides; a combined name such as ``mscl+mcl``
uses methods/mscl.yaml unless a file of its own exists.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from motionclr.bench import write_section
from motionclr.bench.freshness import changed, saved_settings, settings
from motionclr.errors import UserError

DATASETS = ("synthetic", "synthetic-objects")
DATASET_TITLES = {"synthetic": "camera motion (`synthetic`)",
                  "synthetic-objects": "object motion (`synthetic-objects`)"}
DEFAULT_METHODS = ("moco", "modist", "mscl", "vclr", "mcl", "supervised")
# Not self-supervised: trained on the labels, the reference for what the backbone can learn.
REFERENCE = {"supervised": "supervised (labels; reference)"}
KS = (1, 5)
FULL = "default"
# variant name -> (what is off, overrides). The first is the method's default config.
ABLATIONS = {
    # The RGB-RGB instance term of MoDist and MSCL: the evidence for why their RGB encoders
    # stay near chance on object motion at this budget (docs/methods.md).
    "modist": {FULL: ("nothing (default config)", []),
               "no-rgb": ("L_rgb, the RGB-RGB instance term (`method.terms.loss_rgb=0`)",
                          ["method.terms.loss_rgb=0"])},
    "mscl": {FULL: ("nothing (default config)", []),
             "no-rgb": ("L_rgb, the RGB-RGB instance term (`method.terms.loss_rgb=0`)",
                        ["method.terms.loss_rgb=0"])},
    "mcl": {FULL: ("nothing (default config)", []),
            "no-inter": ("L_inter (`method.terms.loss_inter=0`)", ["method.terms.loss_inter=0"]),
            "no-intra": ("L_intra (`method.terms.loss_intra=0`)", ["method.terms.loss_intra=0"]),
            "no-order": ("L_order (`method.terms.loss_order=0`)", ["method.terms.loss_order=0"]),
            "no-mal": ("L_MAL (`method.terms.loss_mal=0`)", ["method.terms.loss_mal=0"]),
            "no-motion-crop": ("motion-focused spatial crop (`method.params.motion_crop=false`)",
                               ["method.params.motion_crop=false"]),
            "no-motion-tubelets": ("motion-focused temporal sampling, uniform starts "
                                   "(`method.params.p_motion=0`)", ["method.params.p_motion=0"])},
    "vclr": {FULL: ("nothing (default config)", []),
             "no-inter": ("L_inter (`method.terms.loss_inter=0`)", ["method.terms.loss_inter=0"]),
             "no-intra": ("L_intra (`method.terms.loss_intra=0`)", ["method.terms.loss_intra=0"]),
             "no-segment": ("L_segment (`method.terms.loss_segment=0`)",
                            ["method.terms.loss_segment=0"]),
             "no-order": ("L_order (`method.terms.loss_order=0`)", ["method.terms.loss_order=0"])},
}
ABLATION_DATASET = "synthetic-objects"
# The one knob the evidence points at, chosen without the test split: the weight of each
# method's RGB instance term (MoDist/MSCL: RGB-RGB, MCL: inter-video), on a grid, on both
# datasets, picked by retrieval among the train split's own groups (``val_probe``).
# Variant names match ABLATIONS' where the run is the same.
SELECT = {"modist": ("loss_rgb", {FULL: 1.0, "rgb-0.25": 0.25, "no-rgb": 0.0}),
          "mscl": ("loss_rgb", {FULL: 1.0, "rgb-0.25": 0.25, "no-rgb": 0.0}),
          "mcl": ("loss_inter", {FULL: 1.0, "inter-0.25": 0.25, "no-inter": 0.0})}


def select_overrides(method: str, variant: str) -> list[str]:
    term, grid = SELECT[method]
    return [] if variant == FULL else [f"method.terms.{term}={grid[variant]:g}"]


COMBOS = {"modist+mcl": ("modist", "mcl"), "mscl+mcl": ("mscl", "mcl")}
TABLES = ("headline", "modist", "mscl", "mcl", "vclr", "combos", "select")


@dataclass(frozen=True)
class Run:
    dataset: str
    method: str
    seed: int
    variant: str = FULL
    overrides: tuple = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.method}/{self.variant}/s{self.seed}"

    def run_dir(self, work: Path) -> Path:
        """Where the bench trains this run under ``work``."""
        return work / self.dataset / f"{self.method}-{self.variant}-s{self.seed}"


def table_runs(table: str, datasets, methods, seeds) -> list[Run]:
    """The runs one table reads (runs shared between tables have the same key)."""
    if table == "headline":
        return [Run(d, m, s) for d in datasets for m in methods for s in seeds]
    if table in ABLATIONS:
        return [Run(ABLATION_DATASET, table, s, v, tuple(o))
                for v, (_, o) in ABLATIONS[table].items() for s in seeds]
    if table == "select":
        return [Run(d, m, s, v, tuple(select_overrides(m, v))) for d in datasets
                for m, (_, grid) in SELECT.items() for v in grid for s in seeds]
    if table == "combos":
        names = dict.fromkeys(m for c, parts in COMBOS.items() for m in (*parts, c))
        return [Run(ABLATION_DATASET, m, s) for m in names for s in seeds]
    raise ValueError(f"unknown table {table!r}; valid: {list(TABLES)}")


def plan(tables, datasets, headline, seeds) -> list[Run]:
    """Unique runs of ``tables`` (in table order) on ``datasets``; the headline table with
    the methods ``headline``."""
    out: dict[str, Run] = {}
    for t in tables:
        for r in table_runs(t, DATASETS, headline, seeds):
            if r.dataset in datasets:
                out.setdefault(r.key, r)
    return list(out.values())


def method_config(run: Run, epochs: int | None, run_dir: Path, configs: Path,
                  overrides: list[str], roots: dict[str, str] | None = None):
    from motionclr.config import load_config
    from motionclr.datasets.synthetic import generator
    own = configs / "methods" / f"{run.method}.yaml"
    base = configs / "methods" / f"{run.method.split('+')[0]}.yaml"
    files = [configs / "datasets" / f"{run.dataset}.yaml", own if own.is_file() else base,
             configs / "demo.yaml"]
    over = [f"method.name={run.method}", f"train.seed={run.seed}", f"train.run={run_dir}"]
    if (roots or {}).get(run.dataset):
        over.append(f"data.root={roots[run.dataset]}")
    if run.method == "supervised":
        over.append(f"method.params.num_classes={len(generator(run.dataset).CLASSES)}")
    if epochs is not None:
        over.append(f"train.epochs={epochs}")
    return load_config(files, over + list(overrides) + list(run.overrides))


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _final_terms(run: Path) -> dict[str, float]:
    """Mean of each logged loss term over the last epoch's rows of ``log.csv`` (the loss
    curves stay in the run directory; this keeps their end point with the result)."""
    import csv
    path = run / "log.csv"
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(path.open()))
    if not rows or "epoch" not in rows[-1]:
        return {}
    last = [r for r in rows if r["epoch"] == rows[-1]["epoch"]]
    out = {}
    for k in last[0]:
        if k.startswith("loss") or k.startswith("mal_") or k.endswith("_acc"):
            try:
                out[k] = statistics.fmean(float(r[k]) for r in last if r.get(k) not in ("", None))
            except (ValueError, statistics.StatisticsError):
                pass
    return out


def run_one(cfg, progress: bool) -> dict:
    """Pretrain from scratch (the run directory is cleared) and evaluate retrieval."""
    from motionclr.eval.retrieval import run_retrieval
    from motionclr.pretrain import pretrain
    run = Path(cfg.train.run)
    if run.exists():
        shutil.rmtree(run)  # a leftover checkpoint would be resumed, not retrained
    t0, c0 = time.perf_counter(), _cpu_seconds()
    pretrain(cfg, progress=progress)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    res = run_retrieval(run, device=cfg.train.device, progress=False)
    rec = {int(k): v for k, v in res["recall"].items()}
    return {"method": cfg.method.name, "dataset": cfg.data.dataset, "seed": cfg.train.seed,
            "seconds": seconds, "cpu_seconds": cpu,
            "recall": {k: rec[k] for k in KS}, "n_query": res["protocol"]["n_query"],
            "n_gallery": res["protocol"]["n_gallery"], "final_terms": _final_terms(run),
            "per_class_r1": per_class_r1(run, cfg),
            **{name: probe(run, cfg.data.dataset, cfg.train.device)
               for name, probe in PROBES.items()}}


def flow_probe(run: Path, dataset: str, device: str) -> dict:
    """R@1 of the run's flow encoder (``bench/pathway.py``) with its per-class R@1, for
    methods that train one; {} otherwise."""
    from motionclr.bench.pathway import flow_pathway_recall
    from motionclr.datasets.synthetic import generator
    return flow_pathway_recall(run, generator(dataset).CLASSES, device) or {}


def linear_probe(run: Path, dataset: str, device: str) -> dict:
    """Top-1 of CoCLR's BN + linear probe on the run's cached retrieval features
    (``motionclr.eval.linear``: hyperparameters chosen on a held-out part of the train
    split, refitted on all of it, scored once on test). Retrieval ranks by whatever
    dominates the feature; the probe asks whether the motion is linearly readable at all."""
    from motionclr.eval.linear import run_linear
    got = run_linear(run, device=device, knobs={"classifiers": [LINEAR]},
                     progress=False)["classifiers"][LINEAR]
    return {"classifier": LINEAR, "top1": got["top1"], "top5": got["top5"],
            "hparams": got["hparams"]}


def alignment_probe(run: Path, dataset: str, device: str) -> dict:
    """RGB-to-own-flow cosines of a two-stream run (``bench/pathway.py``); {} otherwise."""
    from motionclr.bench.pathway import cross_modal_alignment
    return cross_modal_alignment(run, device) or {}


def val_probe(run: Path, dataset: str, device: str) -> dict:
    """R@1/R@5 of retrieval among the train split's own groups (``eval/val_retrieval.py``):
    the score a knob is chosen by; {} where the train split has fewer than 2 groups."""
    from motionclr.eval.val_retrieval import run_val_recall
    try:
        got = run_val_recall(run, device=device, progress=False, ks=(1, 5))
    except ValueError as e:  # too few groups (tiny test sets): the probe does not apply
        print(f"{run}: no validation score ({e})", flush=True)
        return {}
    return {"r1": got["recall"][1], "r5": got["recall"][5], "n_query": got["n_query"],
            "folds": got["folds"], "unit": got["unit"]}


LINEAR = "bn_linear"
# Measurements made on a finished run's checkpoint, stored in its row under these names.
PROBES = {"flow_pathway": flow_probe, "linear": linear_probe, "cross_modal": alignment_probe,
          "val": val_probe}


def backfill_probes(runs: list[Run], mine: dict, work: Path, cache_path: Path,
                    budget: str, device: str, redo: tuple = ()) -> dict:
    """Each of ``PROBES`` for cached rows of ``runs`` that lack it, and the probes named in
    ``redo`` for every cached row (after a probe's protocol changed), from their run
    directories' checkpoints (a probe that does not apply leaves an empty mark)."""
    for r in runs:
        row = mine.get(r.key)
        run = r.run_dir(work)
        missing = [n for n in PROBES if row is not None and (n not in row or n in redo)]
        if not missing or not (run / "checkpoint.pt").is_file():
            continue
        row = {**row, **{n: PROBES[n](run, r.dataset, device) for n in missing}}
        mine = save_row(cache_path, budget, r.key, row)[budget]
        print(f"{r.key}: probed {', '.join(n for n in missing if row[n])}", flush=True)
    return mine


def per_class_r1(run: Path, cfg) -> dict[str, float]:
    """R@1 of each class's test queries (features are cached by the retrieval just run): the
    evidence for which motions a representation separates."""
    import numpy as np

    from motionclr.datasets.synthetic import generator
    from motionclr.eval.features import run_features
    from motionclr.eval.retrieval_protocols import neighbours
    rf = run_features(run, None, cfg.train.device, False)
    q_lab, g_lab = np.asarray(rf.query["labels"]), np.asarray(rf.gallery["labels"])
    order, _ = neighbours(rf.query["feats"], rf.gallery["feats"], k=1, center=cfg.eval.center)
    hit = g_lab[order[:, 0]] == q_lab
    names = generator(cfg.data.dataset).CLASSES
    return {names[c]: float(hit[q_lab == c].mean()) for c in sorted(set(q_lab.tolist()))}


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def summarise(rows: list[dict]) -> dict:
    """Mean/std of each R@k (fractions), per-seed R@1, mean seconds of a cell's rows."""
    if not rows:
        return {}
    probed = {name: [r[name][field] for r in rows if r.get(name)]
              for name, field in (("linear", "top1"), ("val", "r1"))}
    return {"seeds": [r["seed"] for r in rows], "r1": [r["recall"][1] for r in rows],
            **{name: (_mean_std(xs), len(xs)) if xs else None for name, xs in probed.items()},
            "seconds": statistics.fmean(r["seconds"] for r in rows),
            "cpu_seconds": statistics.fmean(r.get("cpu_seconds", float("nan")) for r in rows),
            **{k: _mean_std([r["recall"][k] for r in rows]) for k in KS}}


def _pct(ms) -> str:
    """mean ± std in %; one seed has no spread to show."""
    return f"{100 * ms[0]:.1f}" + ("" if ms[1] is None else f" ± {100 * ms[1]:.1f}")


def _cell(runs: list[Run], cache: dict) -> dict:
    return summarise([cache[r.key] for r in runs if r.key in cache])


def _gap(a: dict, b: dict, k: int = 1) -> str:
    return f"{100 * (a[k][0] - b[k][0]):+.1f}" if a and b else "–"


def _probe_cell(s: dict, name: str = "linear") -> str:
    """A probe's cell (``linear``: top-1, ``val``: R@1); rows probed fewer than the cell's
    seeds say how many."""
    if not s.get(name):
        return "–"
    ms, n = s[name]
    return _pct(ms) + ("" if n == len(s["seeds"]) else f" ({n}/{len(s['seeds'])})")


def _seeds_cell(s: dict, want: int) -> str:
    return ",".join(map(str, s["seeds"])) + ("" if len(s["seeds"]) == want
                                             else f" ({len(s['seeds'])}/{want})")


def _row(name: str, s: dict, want: int, extra: list[str]) -> str:
    if not s:
        return f"| {name} | not run | – | – | " + " | ".join(["–"] * (len(extra) + 3)) + " |"
    return (f"| {name} | {_pct(s[1])} | {_pct(s[5])} | {_probe_cell(s)} | " + " | ".join(extra)
            + " | "
            f"{' / '.join(f'{100 * x:.1f}' for x in s['r1'])} | {s['seconds']:.0f} / "
            f"{s['cpu_seconds']:.0f} | {_seeds_cell(s, want)} |")


def render(cache: dict, budget: dict, seeds: list[int], methods: list[str]) -> str:
    """The methods section from the cached rows of one budget."""
    import torch
    cfg = budget["config"]
    want = len(seeds)
    flags = budget["flags"]
    lines = [
        "## Methods on the embedded datasets (same budget)", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"device {cfg['device']}  ",
        f"Rendered: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (each run's own "
        f"date and command are in `results.json`)", "",
        f"Budget for every run: backbone {cfg['backbone']} (width {cfg['width']}), "
        f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} lr "
        f"{cfg['lr']} per 256, clips ({cfg['clip']}), queue {cfg['queue']}, τ {cfg['tau']}, "
        f"key momentum {cfg['momentum']} (cosine to 1); seeds "
        f"{','.join(map(str, seeds))}. Retrieval: test videos query the train gallery, "
        f"features centred, cosine, {cfg['num_clips']} clips per video. Linear top-1: "
        "CoCLR's BN + linear probe on the same frozen features (`motionclr/eval/linear.py`; "
        "weight decay and lr chosen on held-out source groups, 20 % of the train split, "
        "refitted on all of it, scored once on test): whether the motion is linearly "
        "readable even where another cue decides the nearest neighbour. Cells: R@1/R@5 mean ± "
        "sample standard deviation over seeds (%); Δ: difference of the means in points; "
        f"`not run` or `(n/{want})`: runs not (yet) in the cache with the configs' current "
        f"settings; pretrain s: wall seconds, "
        "CPU s: the process's CPU seconds (with its finished loader workers). Chance R@1 is "
        "12.5 % (8 balanced classes). The supervised row uses the labels (same backbone, "
        "clips, augmentation and epochs): the reference for what the budget can learn from "
        "RGB at all.", ""]
    head = ("| {} | R@1 (%) | R@5 (%) | linear top-1 (%) | {} | R@1 per seed | "
            "pretrain s / CPU s | seeds |")
    for ds in DATASETS:
        n_q = next((r["n_query"] for k, r in cache.items() if k.startswith(ds + "/")), None)
        lines += [f"### {DATASET_TITLES[ds]}", "",
                  f"Command: `motionclr bench methods --tables headline --datasets {ds}"
                  f"{flags}`" + (f"; {n_q} test queries (one is {100 / n_q:.1f} points)"
                                 if n_q else ""), "",
                  head.format("method", "ΔR@1 vs moco"), "|---|---|---|---|---|---|---|---|"]
        moco = _cell(table_runs("headline", [ds], ["moco"], seeds), cache)
        # plus any other method run on this dataset with its default config (combos)
        cached = [r["method"] for k, r in cache.items()
                  if k.startswith(ds + "/") and r.get("variant", FULL) == FULL]
        for m in dict.fromkeys([*methods, *cached]):
            s = _cell(table_runs("headline", [ds], [m], seeds), cache)
            lines.append(_row(REFERENCE.get(m, m), s, want,
                              ["–" if m == "moco" else _gap(s, moco)]))
        lines += [""] + per_class_table(ds, [*methods, *cached], seeds, cache)
        lines += alignment_table(ds, cache)
    moco = _cell(table_runs("headline", [ABLATION_DATASET], ["moco"], seeds), cache)
    for method, variants in ABLATIONS.items():
        runs = table_runs(method, [], [], seeds)
        full = _cell([r for r in runs if r.variant == FULL], cache)
        lines += [f"### {method.upper()} ablation, object motion", "",
                  f"Command: `motionclr bench methods --tables {method}{flags}`", "",
                  head.format("switched off", "ΔR@1 vs default | ΔR@1 vs moco"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for v, (what, _) in variants.items():
            s = _cell([r for r in runs if r.variant == v], cache)
            lines.append(_row(what, s, want, ["–" if v == FULL else _gap(s, full),
                                              _gap(s, moco)]))
        lines.append("")
    lines += ["### Combinations against their parts, object motion", "",
              f"Command: `motionclr bench methods --tables combos{flags}`", "",
              head.format("method", "ΔR@1 vs best part | ΔR@1 vs moco"),
              "|---|---|---|---|---|---|---|---|---|"]
    combo_runs = table_runs("combos", [], [], seeds)
    cells = {m: _cell([r for r in combo_runs if r.method == m], cache)
             for m in dict.fromkeys(r.method for r in combo_runs)}
    for m, s in cells.items():
        parts = [cells[p] for p in COMBOS.get(m, ())]
        best = max(parts, key=lambda p: p[1][0]) if parts and all(parts) else {}
        lines.append(_row(m, s, want, [_gap(s, best) if m in COMBOS else "–", _gap(s, moco)]))
    lines += [""] + select_table(cache, seeds, flags)
    return "\n".join(lines)


def chosen_variant(cells: dict[str, list[dict]], weights: dict[str, float]) -> str | None:
    """The variant with the highest mean validation R@1 over its rows (every row scored);
    a tie goes to the larger weight (``weights``), the one nearer the reference's. None
    while any variant lacks a run or a score: a choice among part of the grid is no choice."""
    if not cells or not all(rows and all(r.get("val") for r in rows) for rows in cells.values()):
        return None
    return max(cells, key=lambda v: (statistics.fmean(r["val"]["r1"] for r in cells[v]),
                                     weights[v]))


def select_table(cache: dict, seeds: list[int], flags: str) -> list[str]:
    """Each ``SELECT`` method's instance-term weight chosen by validation retrieval inside
    the train split (never the test split), on both datasets; every grid point is shown."""
    want = len(seeds)
    weights = sorted({w for _, g in SELECT.values() for w in g.values()}, reverse=True)
    out = ["### Choosing the instance term's weight without the test split", "",
           f"Command: `motionclr bench methods --tables select{flags}` (`--backfill` adds the "
           "validation score to rows cached before it existed). The weight of the RGB "
           "instance term (MoDist, MSCL: `loss_rgb`, RGB-RGB; MCL: `loss_inter`, between "
           "videos) on the grid "
           f"{', '.join(f'{w:g}' for w in weights)}, every other setting the "
           "default. Val R@1: retrieval inside the train split, each group number in turn "
           "querying the train videos of the other groups, as the test split holds out "
           "groups (`motionclr/eval/val_retrieval.py`). Chosen (**bold**): the highest mean "
           "val R@1 over the seeds; its test R@1 is the method's number with the weight set "
           "this way. The weight-1 rows are the headline tables' runs; moco has no such "
           "knob and is shown for its val R@1.", "",
           "| dataset | method | weight | val R@1 (%) | test R@1 (%) | test R@5 (%) | "
           "linear top-1 (%) | ΔR@1 vs moco | seeds |", "|---" * 9 + "|"]
    for ds in DATASETS:
        moco_rows = [cache[r.key] for r in table_runs("headline", [ds], ["moco"], seeds)
                     if r.key in cache]
        moco = summarise(moco_rows)
        rows = [("moco", "–", moco_rows)]
        for m, (term, grid) in SELECT.items():
            cells = {v: [cache[r.key] for r in table_runs("select", [ds], [], seeds)
                         if r.method == m and r.variant == v and r.key in cache]
                     for v in grid}
            best = chosen_variant(cells, grid)
            rows += [(f"**{m}**" if v == best else m,
                      (f"**`{term}`={grid[v]:g}**" if v == best else f"`{term}`={grid[v]:g}"),
                      cells[v]) for v in grid]
        for name, weight, got in rows:
            s = summarise(got)
            if not s:
                out.append(f"| {ds} | {name} | {weight} | not run |" + " – |" * 5)
                continue
            gap = "–" if name == "moco" else _gap(s, moco)
            out.append(f"| {ds} | {name} | {weight} | {_probe_cell(s, 'val')} | {_pct(s[1])} | "
                       f"{_pct(s[5])} | {_probe_cell(s)} | {gap} | {_seeds_cell(s, want)} |")
    return out + [""]


def alignment_table(ds: str, cache: dict) -> list[str]:
    """The cross-modal alignment of every cached two-stream run on ``ds`` (means over its
    seeds), ablation variants included: does the RGB embedding match its own flow by the
    motion?"""
    cells: dict[tuple, list[dict]] = {}
    for r in cache.values():
        if r.get("dataset") == ds and r.get("cross_modal"):
            cells.setdefault((r["method"], r.get("variant", FULL)), []).append(r)
    if not cells:
        return []
    out = ["Cross-modal alignment of the two-stream runs (`motionclr/bench/pathway.py`, "
           "`cross_modal_alignment`; test clips, eval mode, centre crop): mean cosine of a "
           "clip's RGB embedding with its own flow's and with the same flow reversed (every "
           "vector turned by 180°: same moving region, opposite motion), and how often the "
           "own flow is closer (50 %: matched by where the motion is, not by what it is).", "",
           "| method | variant | seeds | R@1 (%) | linear top-1 (%) | cos own flow | "
           "cos reversed flow | own closer (%) |", "|---" * 8 + "|"]
    for (m, v), rows in sorted(cells.items()):
        s = summarise(rows)
        mean = {k: statistics.fmean(r["cross_modal"][k] for r in rows)
                for k in ("cos_own", "cos_reversed", "own_beats_reversed")}
        out.append(f"| {m} | {v} | {','.join(map(str, s['seeds']))} | {_pct(s[1])} | "
                   f"{_probe_cell(s)} | {mean['cos_own']:.2f} | {mean['cos_reversed']:.2f} | "
                   f"{100 * mean['own_beats_reversed']:.0f} |")
    return out + [""]


def per_class_table(ds: str, methods, seeds, cache: dict) -> list[str]:
    """R@1 per query class (mean over the cached seeds) of each method run on ``ds``."""
    rows = {}
    for m in dict.fromkeys(methods):
        got = [cache[r.key]["per_class_r1"] for r in table_runs("headline", [ds], [m], seeds)
               if r.key in cache and cache[r.key].get("per_class_r1")]
        if got:
            rows[m] = {c: statistics.fmean(g[c] for g in got) for c in got[0]}
    if not rows:
        return []
    classes = list(next(iter(rows.values())))
    flow = {}  # the flow pathways of two-stream methods: the teacher's own R@1
    for m in rows:
        got = [cache[r.key]["flow_pathway"] for r in table_runs("headline", [ds], [m], seeds)
               if r.key in cache and cache[r.key].get("flow_pathway")]
        if got:
            flow[f"{m}: flow pathway"] = {c: statistics.fmean(g["per_class_r1"][c] for g in got)
                                          for c in classes}
            flow[f"{m}: flow pathway"]["all"] = statistics.fmean(g["r1"] for g in got)
    out = ["R@1 per query class (%, mean over the seeds run). A `flow pathway` row is the "
           "same retrieval with that method's flow encoder on the clips' flow (the motion "
           "teacher, discarded after pretraining; `motionclr/bench/pathway.py`), its overall "
           "R@1 in brackets:", "",
           "| method | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    out += [f"| {m} | " + " | ".join(f"{100 * v[c]:.0f}" for c in classes) + " |"
            for m, v in rows.items()]
    out += [f"| {m} ({100 * v['all']:.1f}) | " + " | ".join(f"{100 * v[c]:.0f}"
                                                           for c in classes) + " |"
            for m, v in flow.items()]
    return out + [""]


def parse(argv):
    ap = argparse.ArgumentParser(prog="motionclr bench methods",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="the tables' seeds: 0..n-1")
    ap.add_argument("--only-seeds", default="",
                    help="comma-separated subset of those to run now (default: all)")
    ap.add_argument("--epochs", type=int, default=80, help="the budget (configs/demo.yaml: 12)")
    ap.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated of {TABLES}")
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    ap.add_argument("--methods", default="",
                    help="comma-separated: run only these methods (headline default: "
                         f"{','.join(DEFAULT_METHODS)}; a name outside it is added to the "
                         "headline table)")
    ap.add_argument("--root", nargs="*", default=[], metavar="DATASET=PATH",
                    help="a dataset's root (default: its config's data.root)")
    ap.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update")
    ap.add_argument("--workdir", default="runs/bench-methods",
                    help="run directories and results.json (the cache)")
    ap.add_argument("--configs", default="configs", help="the configs/ directory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--momentum", default="0.99",
                    help="key-encoder momentum shared by every method (MoCo's); the papers' "
                         "0.994-0.999 barely move the key encoder in a few dozen steps. "
                         "'method' keeps each method's own value")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run (e.g. data.cache=...)")
    ap.add_argument("--rerun", action="store_true",
                    help="retrain selected runs even when cached (e.g. after a method change)")
    ap.add_argument("--list", action="store_true", help="print the selected runs and stop")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--backfill", "--flow-probe", dest="backfill", action="store_true",
                    help=f"add the probes {list(PROBES)} (flow pathway R@1, linear probe, "
                         "cross-modal alignment, validation score) to cached runs that lack "
                         "them (from their checkpoints), then render")
    ap.add_argument("--reprobe", default="", metavar="NAMES",
                    help=f"comma-separated of {list(PROBES)}: recompute these probes for "
                         "every selected cached run (after a probe's protocol changed), "
                         "then render")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the section from <workdir>/results.json (no training)")
    return ap.parse_args(argv)


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def clips_of(cfg) -> str:
    """A dataset preset's clips and training augmentation, as the budget text shows them."""
    from motionclr.datasets.transforms import AugmentCfg
    a = AugmentCfg.from_config(cfg)
    return (f"{cfg.clip.clip_len}x{cfg.clip.crop}² stride {cfg.clip.stride}, crop scale "
            f"{a.scale[0]:g}-{a.scale[1]:g}, colour jitter p {a.jitter_p:g}, grayscale p "
            f"{a.gray_p:g}, blur p {a.blur_p:g}")


def budget_of(args, cfgs: dict) -> dict:
    """What makes runs comparable: the cache key's budget part, and what the text shows
    (``cfgs``: dataset -> its moco config; shared settings are read from the first)."""
    cfg = next(iter(cfgs.values()))
    flags = "" if args.seeds == 3 else f" --seeds {args.seeds}"
    flags += "" if args.epochs == 80 else f" --epochs {args.epochs}"
    flags += "" if args.momentum == "0.99" else f" --momentum {args.momentum}"
    flags += "" if args.device == "cpu" else f" --device {args.device}"
    flags += (" --set " + " ".join(args.set)) if args.set else ""
    return {"key": json.dumps({"epochs": args.epochs, "momentum": args.momentum,
                               "device": args.device, "set": sorted(args.set)}),
            "flags": flags,
            "config": {"backbone": cfg.model.backbone, "width": cfg.model.width,
                       "epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size,
                       "optimizer": cfg.train.optimizer, "lr": cfg.train.lr,
                       "clip": "; ".join(f"`{d}` {clips_of(c)}" for d, c in cfgs.items()),
                       "queue": cfg.method.queue_size, "tau": cfg.method.temperature,
                       "momentum": cfg.method.momentum, "device": cfg.train.device,
                       "num_clips": cfg.eval.num_clips}}


def fresh_rows(rows: dict, cache_path: Path, budget: str, epochs, work: Path, configs: Path,
               over: list[str], roots: dict) -> tuple[dict, dict]:
    """(rows still trained with what the configs give now, {key: changed settings} of the
    others). Rows cached before rows kept their settings get them from their run's saved
    config, written back once so that ``results.json`` carries them."""
    fresh, stale, filled = {}, {}, {}
    for key, row in rows.items():
        r = Run(row["dataset"], row["method"], int(row["seed"]), row.get("variant", FULL),
                tuple(row.get("overrides", ())))
        run_dir = r.run_dir(work)
        now = settings(method_config(r, epochs, run_dir, configs, over, roots).to_dict())
        old = saved_settings(row, run_dir)
        why = changed(old, now)
        if why:
            stale[key] = why
            continue
        fresh[key] = row
        if not row.get("settings"):
            filled[key] = {**row, "settings": old}
    if filled:
        saved = save_rows(cache_path, budget, filled)[budget]
        fresh.update({key: saved[key] for key in filled})
    return fresh, stale


def load_cache(path: Path) -> dict:
    """``{budget key: {run key: row}}``; an old single-budget file (rows list) is ignored."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for b, runs in data.get("budgets", {}).items():
        out[b] = {k: {**r, "recall": {int(i): v for i, v in r["recall"].items()}}
                  for k, r in runs.items()}
    return out


def save_row(path: Path, budget: str, key: str, row: dict) -> dict:
    """Add one finished run to ``path`` and return the whole cache."""
    return save_rows(path, budget, {key: row})


def save_rows(path: Path, budget: str, rows: dict) -> dict:
    """Add rows (key -> row) to ``path`` and return the whole cache. The file is re-read
    under a lock and merged, so benches running other pieces in the same workdir at the
    same time keep each other's rows."""
    import fcntl

    from motionclr.pipeline.cache import atomic_write_text
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = load_cache(path)
        cache.setdefault(budget, {}).update(rows)
        atomic_write_text(path, json.dumps({"budgets": cache}, indent=1))
    return cache


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def prepare_dataset(cfg, progress: bool) -> None:
    """Write the embedded dataset if its root has none of this generator version, then make
    sure its flow stage exists (cached: shared by every run of the dataset)."""
    from motionclr.datasets.synthetic import generator
    from motionclr.pipeline.flow_stage import run_flow_stage
    gen = generator(cfg.data.dataset)
    if not gen.is_current(cfg.data.root):
        gen.generate(Path(cfg.data.root), seed=0)
    run_flow_stage(cfg, progress=progress)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parse(argv)
    tables = _csv(args.tables)
    bad = [t for t in tables if t not in TABLES] + [
        d for d in _csv(args.datasets) if d not in DATASETS]
    if bad:
        raise UserError(f"unknown table/dataset {bad}; tables {list(TABLES)}, "
                         f"datasets {list(DATASETS)}")
    datasets = _csv(args.datasets)
    redo = tuple(_csv(args.reprobe))
    if set(redo) - set(PROBES):
        raise UserError(f"unknown probe(s) {sorted(set(redo) - set(PROBES))}; valid: "
                        f"{list(PROBES)}")
    chosen = _csv(args.methods)
    extra = [m for m in chosen if m not in DEFAULT_METHODS] if "headline" in tables else []
    headline = list(DEFAULT_METHODS) + extra
    seeds = list(range(args.seeds))
    now = [int(s) for s in _csv(args.only_seeds)] or seeds
    if set(now) - set(seeds):
        raise UserError(f"--only-seeds {args.only_seeds} not in "
                         f"0..{args.seeds - 1}")
    roots = dict(r.split("=", 1) for r in args.root)
    over = [f"train.device={args.device}", *args.set]
    if args.momentum != "method":
        over.insert(0, f"method.momentum={float(args.momentum)}")
    work, configs = Path(args.workdir), Path(args.configs)
    budget = budget_of(args, {d: method_config(Run(d, "moco", 0), args.epochs, work / "x",
                                               configs, over, roots) for d in DATASETS})
    cache_path = work / "results.json"
    cache = load_cache(cache_path)
    mine, stale = fresh_rows(cache.get(budget["key"], {}), cache_path, budget["key"],
                             args.epochs, work, configs, over, roots)
    runs = [r for r in plan(tables, datasets, headline, now)
            if not chosen or r.method in chosen]
    todo = [r for r in runs if args.rerun or r.key not in mine]
    if stale:
        key, why = next(iter(stale.items()))
        print(f"{len(stale)} cached run(s) were trained with settings the configs no longer "
              f"give (not shown; retrained when selected), e.g. {key}: {'; '.join(why[:3])}",
              flush=True)
    if args.list or not args.render_only:
        print(f"{len(runs)} run(s) selected, {len(runs) - len(todo)} cached, "
              f"{len(todo)} to train", flush=True)
    if args.list:
        for r in runs:
            print(f"  {'cached ' if r.key in mine else 'to run '} {r.key} "
                  f"{' '.join(r.overrides)}")
        return 0
    if not args.render_only:
        cmd = "motionclr bench methods " + " ".join(argv)
        ready: set[str] = set()
        for r in todo:
            cfg = method_config(r, args.epochs, r.run_dir(work), configs, over, roots)
            if r.dataset not in ready:
                prepare_dataset(cfg, progress=not args.quiet)
                ready.add(r.dataset)
            row = run_one(cfg, progress=not args.quiet)
            row.update(settings=settings(cfg.to_dict()), key=r.key, variant=r.variant,
                       overrides=list(r.overrides), command=cmd.strip(), commit=_commit(),
                       date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
            # after every run: a stopped bench resumes here
            mine = save_row(cache_path, budget["key"], r.key, row)[budget["key"]]
            print(f"{r.key}: R@1 {100 * row['recall'][1]:.1f} R@5 {100 * row['recall'][5]:.1f}"
                  f" ({row['seconds']:.0f}s, {row['cpu_seconds']:.0f} CPU s)", flush=True)
    if args.backfill or redo:
        mine = backfill_probes(runs, mine, work, cache_path, budget["key"], args.device, redo)
    if not mine:
        raise UserError(f"no cached runs of this budget in {cache_path}")
    body = render(mine, budget, seeds, headline)
    write_section(Path(args.out), body, "methods")
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
