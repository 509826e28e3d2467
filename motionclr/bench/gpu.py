"""`motionclr bench gpu` (`make bench-gpu`): the GPU numbers of the pipeline in one run.

Sections, each timed with the device synchronised and its peak device memory recorded:

1. ``tvl1_torch`` pairs/s at 340x256 for the ``opencv`` and ``fast`` presets at several batch
   sizes (real clip pairs of the bundled ``bunny_wide`` and ``bigbuckbunny``, tiled to fill the
   batch), mean EPE against OpenCV's CPU TV-L1 on the same pairs, and ground-truth EPE per
   motion type (``motionclr.flow.synthetic.motion_suite``) for OpenCV and both presets;
2. RAFT small / large pairs/s (torchvision; random weights unless ``--raft-small`` /
   ``--raft-large`` name a local checkpoint: speed does not depend on the weights);
3. the flow stage on the device (decode + batched flow + parts, synthetic videos), then the
   shard reader (``ShardClipDataset`` through a ``DataLoader``) with and without the GPU
   augmentation of a two-view RGB+flow method (``batch_to_device`` + ``method.views``);
4. pretraining steps/s for moco, modist and mscl: r3d_18, 16x112^2 clips, batch 32, AMP
   (CUDA), one real batch from the shards reused so the step is timed without the loader.

The JSON (``--json``) holds every number; the markdown goes into ``--out`` between
``<!-- bench:gpu:start -->`` and ``<!-- bench:gpu:end -->``. ``--small`` shrinks every size so
the whole benchmark runs on a CPU in a test (its numbers say nothing about a GPU).
A ``--budget-s`` (default 450) skips sections that would start after it, so one command
finishes in time on one GPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from motionclr.bench import write_section

START, END = "<!-- bench:gpu:start -->", "<!-- bench:gpu:end -->"
METHODS = ("moco", "modist", "mscl")


@dataclass
class Sizes:
    """Everything the benchmark sizes; ``GPU`` is the real run, ``SMALL`` the CPU smoke run."""

    flow_hw: tuple = (256, 340)
    flow_batches: tuple = (8, 32, 64, 128)
    flow_distinct: int = 8           # distinct real pairs (OpenCV reference computed once)
    flow_reps: int = 3
    raft_hw: tuple = (256, 340)
    raft_batches: tuple = (8, 32)
    raft_reps: int = 3
    videos: tuple = (4, 2)           # synthetic generate(groups, clips): 8 * g * c videos
    video_frames: int = 40
    short_side: int = 128
    clip_len: int = 16
    stride: int = 2
    crop: int = 112
    batch: int = 32
    loader_workers: int = 8
    decode_workers: int = 8          # flow stage: decode threads feeding the device
    reader_batches: int = 10
    backbone: str = "r3d_18"
    train_steps: int = 10
    train_warmup: int = 3
    stage_preset: str = "opencv"     # tvl1_torch preset of the flow-stage run
    gt_textures: int = 3             # textures of the motion suite (GT EPE per type)


GPU = Sizes()
SMALL = Sizes(flow_hw=(64, 80), flow_batches=(2,), flow_distinct=2, flow_reps=1,
              raft_hw=(128, 128), raft_batches=(1,), raft_reps=1, videos=(2, 1),
              video_frames=9, short_side=40, clip_len=4, stride=2, crop=32, batch=4,
              loader_workers=0, decode_workers=1, reader_batches=2, backbone="small3d",
              train_steps=1, train_warmup=1, stage_preset="fast", gt_textures=1)


@dataclass
class Result:
    device: str
    sizes: dict
    sections: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    seconds: float = 0.0


class Meter:
    """Wall time with the device synchronised, and the peak device memory of a block."""

    def __init__(self, device):
        import torch
        self.torch, self.cuda = torch, torch.device(device).type == "cuda"
        self.device = device

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**20

    def time(self, fn, reps: int) -> float:
        """Seconds per call of ``fn`` (after one untimed warm-up call)."""
        fn()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / reps


# ---------------------------------------------------------------------------------------------
# 1. tvl1_torch


def bench_tvl1(m: Meter, sz: Sizes) -> dict:
    import torch
    from motionclr.flow import synthetic as S
    from motionclr.flow.opencv import tvl1
    from motionclr.flow.tvl1_torch import rgb_to_gray, tvl1_pairs

    h, w = sz.flow_hw
    per_clip = max(1, sz.flow_distinct // len(S.CLIPS))
    clips = [S.load_clip(c, (h, w), n_frames=per_clip + 1) for c in S.CLIPS]
    pairs = [(c[i], c[i + 1]) for c in clips for i in range(per_clip)]
    ref = np.stack([tvl1(np.stack(p))[0] for p in pairs])  # OpenCV on the CPU, once
    gray = rgb_to_gray(torch.from_numpy(np.stack([np.stack(p) for p in pairs])))
    out = {"size": [w, h], "distinct_pairs": len(pairs), "rows": [], "gt_epe": {}}
    for preset in ("opencv", "fast"):
        for b in sz.flow_batches:
            idx = torch.arange(b) % len(pairs)
            i0 = gray[idx, 0].to(m.device)
            i1 = gray[idx, 1].to(m.device)
            m.reset_peak()
            flows = {}

            def run():
                flows["f"] = tvl1_pairs(i0, i1, preset=preset)
            sec = m.time(run, sz.flow_reps)
            f = flows["f"][:len(pairs)].cpu().numpy()
            out["rows"].append({
                "preset": preset, "batch": b, "pairs_per_s": b / sec,
                "epe_vs_opencv": S.epe(f, ref[:len(f)]), "peak_mib": m.peak_mib()})
    cases = S.motion_suite((h, w), textures=S.MOTION_TEXTURES[:sz.gt_textures])
    out["gt_epe"]["opencv_cpu"] = S.epe_by_type(cases, [tvl1(c.frames)[0] for c in cases])
    g = rgb_to_gray(torch.from_numpy(np.stack([c.frames for c in cases]))).to(m.device)
    for preset in ("opencv", "fast"):
        f = tvl1_pairs(g[:, 0].contiguous(), g[:, 1].contiguous(), preset=preset)
        out["gt_epe"][preset] = S.epe_by_type(cases, list(f.cpu().numpy()))
    return out


# ---------------------------------------------------------------------------------------------
# 2. RAFT


def bench_raft(m: Meter, sz: Sizes, checkpoints: dict) -> dict:
    import torch
    from motionclr.flow import synthetic as S
    from motionclr.flow.raft import load_model, raft_pairs

    h, w = sz.raft_hw
    frames = S.load_clip("bigbuckbunny", (h, w), n_frames=2)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().mul(2 / 255).sub(1)
    out = {"size": [w, h], "num_flow_updates": 12, "rows": []}
    for arch in ("raft_small", "raft_large"):
        ckpt = checkpoints.get(arch) or None
        model = load_model(arch, ckpt, m.device, allow_random_weights=ckpt is None)
        for b in sz.raft_batches:
            a = x[0:1].expand(b, -1, -1, -1).contiguous().to(m.device)
            c = x[1:2].expand(b, -1, -1, -1).contiguous().to(m.device)
            m.reset_peak()
            sec = m.time(lambda: raft_pairs(model, a, c, 12), sz.raft_reps)
            out["rows"].append({"arch": arch, "weights": ckpt or "random", "batch": b,
                                "pairs_per_s": b / sec, "peak_mib": m.peak_mib()})
        del model
    return out


# ---------------------------------------------------------------------------------------------
# 3. flow stage, reader, augmentation; 4. pretraining steps


def _config(method: str, sz: Sizes, device: str, workdir: Path, configs: Path):
    from motionclr.config import load_config
    files = [configs / "datasets" / "synthetic.yaml", configs / "methods" / f"{method}.yaml"]
    over = [f"data.root={workdir / 'data'}", f"data.cache={workdir / 'cache'}",
            f"decode.short_side={sz.short_side}", "flow.method=tvl1_torch",
            f"flow.params={{preset: {sz.stage_preset}}}",
            f"flow.device={device}", f"train.device={device}", f"clip.clip_len={sz.clip_len}",
            f"clip.stride={sz.stride}", f"clip.crop={sz.crop}", f"train.batch_size={sz.batch}",
            f"model.backbone={sz.backbone}", "train.amp=true",
            f"train.num_workers={sz.loader_workers}", f"pipeline.workers={sz.decode_workers}",
            f"method.queue_size={max(64, 4 * sz.batch)}"]
    return load_config([str(f) for f in files], over)


def _loader(method, cfg, stage, device):
    import torch
    from torch.utils.data import DataLoader
    from motionclr.datasets.shard_dataset import ShardClipDataset
    from motionclr.pipeline.index_stage import load_index, run_index_stage
    index = (load_index(run_index_stage(cfg, stage, progress=False))
             if getattr(method, "needs_index", False) else None)
    ds = ShardClipDataset(stage, "train", cfg.data.split, sampler=method.sampler(), train=True,
                          modalities=method.modalities, index=index, seed=0)
    if len(ds) < cfg.train.batch_size:
        raise ValueError(f"{len(ds)} training videos < batch {cfg.train.batch_size}")
    return ds, DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
                          num_workers=cfg.train.num_workers,
                          pin_memory=torch.device(device).type == "cuda",
                          persistent_workers=cfg.train.num_workers > 0)


def bench_pipeline(m: Meter, sz: Sizes, workdir: Path, configs: Path, methods, deadline,
                   skipped: dict) -> dict:
    import torch
    from motionclr.datasets.shard_dataset import batch_to_device
    from motionclr.datasets.synthetic import generate
    from motionclr.pipeline.flow_stage import run_flow_stage
    from motionclr.train.methods import build_method
    from motionclr.train.optim import build_optimizer, optimizer_step

    dev = torch.device(m.device)
    out: dict = {}
    cfg = _config("modist", sz, m.device, workdir, configs)
    generate(Path(cfg.data.root), groups=sz.videos[0], clips=sz.videos[1],
             n_frames=sz.video_frames, seed=0)
    m.reset_peak()
    t0 = time.perf_counter()
    stage = run_flow_stage(cfg, progress=False)
    man = json.loads((stage / "manifest.json").read_text())
    n_pairs = sum(v["n_frames"] - 1 for v in man["videos"])
    out["flow_stage"] = {"videos": len(man["videos"]), "pairs": n_pairs,
                         "preset": sz.stage_preset, "batched": cfg.flow.device.startswith("cuda"),
                         "size": [man["videos"][0]["width"], man["videos"][0]["height"]],
                         "seconds": time.perf_counter() - t0,
                         "cached": man["timing"].get("computed", 0) == 0,
                         "pairs_per_s": n_pairs / max(man["timing"].get("seconds", 0), 1e-9),
                         "peak_mib": m.peak_mib()}

    # reader alone, then reader + transfer + augmentation (modist: 2 views of RGB + flow)
    method = build_method(cfg).to(dev)
    ds, loader = _loader(method, cfg, stage, m.device)
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    m.reset_peak()

    def epochs():
        e = 0
        while True:
            ds.set_epoch(e)
            yield from loader
            e += 1

    def rate(augment: bool) -> float:
        it = epochs()
        next(it)  # workers started, first batch out of the way
        m.sync()
        t0 = time.perf_counter()
        for _ in range(sz.reader_batches):
            b = next(it)
            if augment:
                views = method.views(batch_to_device(b, dev), gen)
                assert views[0]["rgb"].dtype == torch.float32
        m.sync()
        return sz.reader_batches * cfg.train.batch_size / (time.perf_counter() - t0)

    out["reader"] = {"workers": cfg.train.num_workers, "batch": cfg.train.batch_size,
                     "views": method.num_views, "modalities": list(method.modalities),
                     "clip": [cfg.clip.clip_len, cfg.clip.crop], "stride": cfg.clip.stride,
                     "samples_per_s_read": rate(False),
                     "samples_per_s_read_augment": rate(True), "peak_mib": m.peak_mib()}
    del loader, ds, method

    out["train"] = []
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    for name in methods:
        if time.perf_counter() > deadline:
            skipped[f"train {name}"] = "time budget"
            continue
        cfg = _config(name, sz, m.device, workdir, configs)
        method = build_method(cfg).to(dev)
        _, loader = _loader(method, cfg, stage, m.device)
        batch = batch_to_device(next(iter(loader)), dev)
        del loader
        opt = build_optimizer([p for p in method.parameters() if p.requires_grad], cfg, 1e-3)
        amp = dev.type == "cuda" and cfg.train.amp
        scaler = torch.amp.GradScaler("cuda") if amp else None
        method.train()

        def step():
            with torch.autocast(dev.type, enabled=amp):
                loss, _ = method(batch, gen)
            optimizer_step(loss, opt, method.parameters(), cfg.train.grad_clip, scaler)
            method.momentum_update(0.99)
        for _ in range(sz.train_warmup):
            step()
        m.reset_peak()
        sec = m.time(step, sz.train_steps)
        out["train"].append({"method": name, "backbone": cfg.model.backbone,
                             "clip": [cfg.clip.clip_len, cfg.clip.crop],
                             "batch": cfg.train.batch_size, "amp": amp,
                             "steps_per_s": 1 / sec, "clips_per_s": cfg.train.batch_size / sec,
                             "peak_mib": m.peak_mib()})
        del method, opt, batch
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------------------------------------
# report


def _f(x, fmt=".1f") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def render(res: Result, cmd: str, small: bool) -> str:
    import torch
    from motionclr.bench.io import machine
    dev = torch.device(res.device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none (CPU run)"
    s = res.sections
    lines = ["## GPU benchmark (`make bench-gpu`)", ""]
    if dev.type != "cuda":
        lines += ["**No GPU was used for these numbers.** This is the CPU smoke run "
                  f"({'`--small` sizes' if small else 'full sizes'}): it shows the command "
                  "works end to end, its numbers say nothing about GPU throughput. Run "
                  "`make bench-gpu` on a GPU machine to replace this section.", "",
                  "The full run (`make bench-gpu`, one GPU, sections skipped after "
                  "`--budget-s` 450 s): tvl1_torch at 340x256 with batches 8/32/64/128 and "
                  "8 distinct real pairs, RAFT at 340x256 with batches 8/32, 64 synthetic "
                  "videos at 170x128 through the batched flow stage, a DataLoader with 8 "
                  "workers, r3d_18 on 2 views of 16x112² clips, batch 32, AMP.", ""]
    lines += [f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
              f"- Machine: {machine()}; GPU: {gpu}; device `{res.device}`",
              f"- Versions: Python {platform.python_version()}, torch {torch.__version__}"
              f"{', CUDA ' + torch.version.cuda if dev.type == 'cuda' else ''}",
              f"- Command: `{cmd}` ({res.seconds:.0f} s in total)",
              "- Goal on one H100-class GPU: `fast` >= 300 pairs/s, `opencv` >= 100 pairs/s "
              "at 340x256.", ""]
    if "tvl1" in s:
        t = s["tvl1"]
        lines += [f"### tvl1_torch at {t['size'][0]}x{t['size'][1]}", "",
                  f"{t['distinct_pairs']} distinct real pairs tiled to the batch; EPE vs "
                  "OpenCV: mean end-point error against OpenCV's CPU TV-L1 on those pairs "
                  "(all pixels).", "",
                  "| preset | batch | pairs/s | EPE vs OpenCV (px) | peak MiB |",
                  "|---|---:|---:|---:|---:|"]
        for r in t["rows"]:
            lines.append(f"| {r['preset']} | {r['batch']} | {_f(r['pairs_per_s'])} | "
                         f"{_f(r['epe_vs_opencv'], '.4f')} | {_f(r['peak_mib'], '.0f')} |")
        types = list(next(iter(t["gt_epe"].values())))
        lines += ["", "Ground-truth EPE per motion type (px; `motion_suite`, borders excluded):",
                  "", "| engine | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
        for k, v in t["gt_epe"].items():
            lines.append(f"| {k} | " + " | ".join(_f(v[x], ".4f") for x in types) + " |")
        lines.append("")
    if "raft" in s:
        r0 = s["raft"]
        lines += [f"### RAFT at {r0['size'][0]}x{r0['size'][1]} (12 updates, fp32)", "",
                  "| model | weights | batch | pairs/s | peak MiB |", "|---|---|---:|---:|---:|"]
        for r in r0["rows"]:
            lines.append(f"| {r['arch']} | {r['weights']} | {r['batch']} | "
                         f"{_f(r['pairs_per_s'])} | {_f(r['peak_mib'], '.0f')} |")
        lines.append("")
    if "pipeline" in s:
        p = s["pipeline"]
        fs, rd = p["flow_stage"], p["reader"]
        lines += ["### Flow stage, shard reader and GPU augmentation", "",
                  f"- Flow stage (`tvl1_torch` {fs['preset']} preset on `{res.device}`, "
                  f"decode + flow + parts + shards): {fs['videos']} synthetic videos, {fs['pairs']} pairs at "
                  f"{fs['size'][0]}x{fs['size'][1]}: {_f(fs['pairs_per_s'])} pairs/s"
                  f"{' (cached from an earlier run)' if fs['cached'] else ''}; peak "
                  f"{_f(fs['peak_mib'], '.0f')} MiB.",
                  f"- Reader: `ShardClipDataset` + `DataLoader({rd['workers']} workers, batch "
                  f"{rd['batch']})`, {rd['views']} views x {rd['clip'][0]} frames (stride "
                  f"{rd['stride']}) of {'+'.join(rd['modalities'])}: "
                  f"{_f(rd['samples_per_s_read'])} samples/s read only, "
                  f"{_f(rd['samples_per_s_read_augment'])} samples/s with `batch_to_device` + "
                  f"`method.views` ({rd['clip'][1]}^2 crops) on the device "
                  f"(x{rd['views']} for clips/s); peak {_f(rd['peak_mib'], '.0f')} MiB.", ""]
        if p["train"]:
            lines += ["| method | backbone | clip | batch | AMP | steps/s | clips/s | peak MiB |",
                      "|---|---|---|---:|---|---:|---:|---:|"]
            for r in p["train"]:
                lines.append(f"| {r['method']} | {r['backbone']} | {r['clip'][0]}x"
                             f"{r['clip'][1]}² | {r['batch']} | {'yes' if r['amp'] else 'no'} | "
                             f"{_f(r['steps_per_s'], '.2f')} | {_f(r['clips_per_s'])} | "
                             f"{_f(r['peak_mib'], '.0f')} |")
            lines += ["", "One real batch from the shards, reused: the step (augmentation, "
                      "forward, backward, optimiser, momentum update) without the loader."]
    if res.skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in res.skipped.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="motionclr bench gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a CPU smoke run")
    ap.add_argument("--sections", default="tvl1,raft,pipeline", help="comma list")
    ap.add_argument("--methods", default=",".join(METHODS), help="pretraining methods")
    ap.add_argument("--raft-small", default="", help="local raft_small state_dict")
    ap.add_argument("--raft-large", default="", help="local raft_large state_dict")
    ap.add_argument("--workdir", default="runs/bench-gpu", help="synthetic data and shards")
    ap.add_argument("--configs", default="configs", help="the configs/ directory")
    ap.add_argument("--json", default="", help="results file (default <workdir>/results.json)")
    ap.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update")
    ap.add_argument("--no-write", action="store_true", help="do not touch --out")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="skip sections that would start after this many seconds")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)

    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("motionclr bench gpu: error: no CUDA device is visible (use --device cpu "
              "--small for the CPU smoke run)", file=sys.stderr)
        return 2
    sz = SMALL if args.small else GPU
    sections = [x for x in args.sections.split(",") if x]
    bad = sorted(set(sections) - {"tvl1", "raft", "pipeline"})
    if bad:
        ap.error(f"unknown section(s) {bad}; valid: tvl1, raft, pipeline")
    methods = [x for x in args.methods.split(",") if x]
    workdir = Path(args.workdir)
    m = Meter(str(dev))
    res = Result(str(dev), asdict(sz))
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    for name in sections:
        if time.perf_counter() > deadline:
            res.skipped[name] = "time budget"
            continue
        t0 = time.perf_counter()
        if name == "tvl1":
            res.sections[name] = bench_tvl1(m, sz)
        elif name == "raft":
            res.sections[name] = bench_raft(m, sz, {"raft_small": args.raft_small,
                                                    "raft_large": args.raft_large})
        else:
            res.sections[name] = bench_pipeline(m, sz, workdir, Path(args.configs), methods,
                                                deadline, res.skipped)
        res.sections[name]["seconds"] = time.perf_counter() - t0
        print(f"bench gpu: {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    res.seconds = time.perf_counter() - t_start
    js = Path(args.json) if args.json else workdir / "results.json"
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(asdict(res), indent=1, default=str))
    body = render(res, " ".join(["motionclr bench gpu"] + argv), args.small)
    print(body)
    if not args.no_write:
        write_section(Path(args.out), body, "gpu")
        print(f"updated {args.out}; results in {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
