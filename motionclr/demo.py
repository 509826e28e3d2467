"""`make demo`: the whole pipeline on the embedded synthetic dataset, on CPU.

generate -> flow (OpenCV TV-L1) -> HDF5 shards -> pretrain (MoCo, small 3D CNN) ->
retrieval. Every stage is cached, so a second run only re-prints the results.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from motionclr.config import load_config

DEMO_CONFIGS = ["configs/datasets/synthetic.yaml", "configs/methods/moco.yaml",
                "configs/demo.yaml"]


def run_demo(configs: list[str] | None = None, overrides: list[str] | None = None) -> dict:
    from motionclr.datasets.synthetic import generator
    from motionclr.eval.retrieval import format_table, run_retrieval
    from motionclr.pipeline.flow_stage import run_flow_stage
    from motionclr.pretrain import pretrain
    from motionclr.train.loop import run_dir_of

    cfg = load_config(configs or DEMO_CONFIGS, overrides)
    timings: dict[str, float] = {}

    def stage(name, fn):
        t0 = time.perf_counter()
        print(f"\n== {name} ==", flush=True)
        out = fn()
        timings[name] = time.perf_counter() - t0
        return out

    stage("generate", lambda: generator(cfg.data.dataset).generate(cfg.data.root,
                                                                    seed=cfg.train.seed))
    flow_dir = stage("flow", lambda: run_flow_stage(cfg))
    run = run_dir_of(cfg)
    stage("pretrain", lambda: pretrain(cfg))
    result = stage("eval-retrieval", lambda: run_retrieval(
        run, overrides=overrides, device=cfg.train.device, progress=False))
    manifest = json.loads((Path(flow_dir) / "manifest.json").read_text())
    rec = {int(k): v for k, v in result["recall"].items()}
    print("\n== results ==")
    print(f"flow shards: {flow_dir} ({len(manifest['videos'])} videos, "
          f"{len(manifest['failed'])} failed)")
    print(f"run: {run}")
    print(format_table(rec, f"retrieval R@k (%), {cfg.method.name}, "
                            f"{result['protocol']['n_query']} test queries"))
    # A demo run is seconds of training: say what its numbers can and cannot show.
    chance = 100.0 / len(manifest["classes"])
    print(f"chance R@1: {chance:.1f} % ({len(manifest['classes'])} classes). The demo budget "
          f"checks that every stage runs; it is too short to learn motion (MoCo learns "
          f"appearance in any case). What each method learns at a real budget: "
          f"`make bench-methods`, docs/benchmarks.md.")
    print("\nstage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    (Path(run) / "demo_timings.json").write_text(json.dumps(timings, indent=1))
    return {"timings": timings, "retrieval": result}
