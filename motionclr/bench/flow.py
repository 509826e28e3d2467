"""`motionclr bench flow`: speed and accuracy of every flow engine on this machine.

For each method (OpenCV ``tvl1`` / ``farneback`` / ``dis``, ``tvl1_torch`` with the ``opencv``
and ``fast`` presets, ``raft_small`` / ``raft_large`` when a local checkpoint is given) it
measures, at 340x256 on ``--device``:

* throughput in frame pairs per second on real decoded clip pairs (the bundled ``bunny_wide`` and
  ``bigbuckbunny``, motionclr.samples, ``--pairs`` consecutive pairs of each, area-resized to 340x256);
* EPE against exact ground truth on the synthetic suite (``motionclr.flow.synthetic``): mean over
  the <= 3 px cases, and the 8 px translation separately;
* EPE against OpenCV TV-L1 on the same real pairs (how close to the reference flow);
* EPE against exact ground truth per motion type (shift, rotate +-2 deg, zoom +-3 %, mixed) on
  ``motionclr.flow.synthetic.motion_suite``: similarity motions rendered from a smooth
  animation frame and two frames of real camera footage, borders excluded.

The table goes into ``--out`` (docs/benchmarks.md) between ``<!-- bench:flow:start -->`` and
``<!-- bench:flow:end -->``, with the machine, versions and the exact command.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from motionclr.devices import resolve_device
from motionclr.flow import compute_flow
from motionclr.flow import synthetic as S
from motionclr.bench import write_section

START, END = "<!-- bench:flow:start -->", "<!-- bench:flow:end -->"


@dataclass
class Entry:
    """One benchmarked configuration and its results."""

    label: str
    method: str
    params: dict = field(default_factory=dict)
    skipped: str = ""
    seconds: float = float("nan")
    cpu_seconds: float = float("nan")   # process CPU time: robust to other jobs on the machine
    pairs: int = 0
    epe_small: float = float("nan")
    epe_large: float = float("nan")
    epe_cases: dict = field(default_factory=dict)
    epe_types: dict = field(default_factory=dict)     # motion type -> mean GT EPE
    epe_vs_tvl1: dict = field(default_factory=dict)   # clip name -> mean EPE vs OpenCV tvl1
    residual: float = float("nan")
    rounds: list = field(default_factory=list)        # (wall s, CPU s) per timed pass


def entries(args) -> list[Entry]:
    out = [Entry("tvl1 (OpenCV CPU)", "tvl1"),
           Entry("tvl1_torch opencv", "tvl1_torch", {"preset": "opencv",
                                                     "batch_size": args.batch_size}),
           Entry("tvl1_torch fast", "tvl1_torch", {"preset": "fast",
                                                   "batch_size": args.batch_size}),
           Entry("farneback (OpenCV)", "farneback"),
           Entry("dis medium (OpenCV)", "dis")]
    for arch, ckpt in (("raft_small", args.raft_small), ("raft_large", args.raft_large)):
        e = Entry(f"{arch} (12 updates)", arch, {"checkpoint": ckpt, "batch_size": args.batch_size})
        if not ckpt:
            e.skipped = f"no checkpoint (--{arch.replace('_', '-')} PATH)"
        elif not Path(ckpt).is_file():
            e.skipped = f"checkpoint {ckpt} not found"
        out.append(e)
    if args.methods:
        keep = set(args.methods.split(","))
        out = [e for e in out if e.method in keep or e.label.split(" (")[0] in keep]
    return out


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_entry(e: Entry, clips: list[np.ndarray], device: str) -> list[np.ndarray]:
    """One timed pass of ``e`` over the real clips; appends to ``e.rounds``; returns flows."""
    fn = lambda frames: compute_flow(frames, e.method, device=device, **e.params)  # noqa: E731
    if not e.rounds:
        fn(clips[0][:2])  # warm-up: model load, allocator, first-call dispatch
    _sync(device)
    flows, t0, c0 = [], time.perf_counter(), time.process_time()
    for frames in clips:
        flows.append(fn(frames))
    _sync(device)
    e.rounds.append((time.perf_counter() - t0, time.process_time() - c0))
    e.seconds = float(np.median([r[0] for r in e.rounds]))
    e.cpu_seconds = float(np.median([r[1] for r in e.rounds]))
    e.pairs = sum(len(f) for f in flows)
    return flows


def run_entry(e: Entry, clips: list[np.ndarray], cases: list, ref: list[np.ndarray] | None,
              device: str, motion_cases: list = ()) -> list[np.ndarray]:
    """Time ``e`` on the real clips (unless already timed) and score it; returns its flows."""
    fn = lambda frames: compute_flow(frames, e.method, device=device, **e.params)  # noqa: E731
    flows = time_entry(e, clips, device) if not e.rounds else [fn(c) for c in clips]
    for c in cases:
        e.epe_cases[c.name] = S.epe(fn(c.frames)[0], c.flow, c.valid)
    e.epe_small = float(np.mean([e.epe_cases[c.name] for c in cases if "large" not in c.tags]))
    e.epe_large = e.epe_cases.get("shift_large", float("nan"))
    if motion_cases:
        e.epe_types = S.epe_by_type(motion_cases, [fn(c.frames)[0] for c in motion_cases])
    e.residual = float(np.mean([photometric_residual(fr, f) for fr, f in zip(clips, flows)]))
    if ref is not None:
        e.epe_vs_tvl1 = {name: S.epe(f, r) for name, f, r in zip(S.CLIPS, flows, ref)}
    return flows


def photometric_residual(frames: np.ndarray, flow: np.ndarray) -> float:
    """Mean |I1(x + u(x)) - I0(x)| in grey levels over pixels whose target is in the frame.

    A ground-truth-free quality check on real video (lower is better; zero flow gives the
    plain frame difference), so methods can be compared where OpenCV itself is wrong.
    """
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)
    h, w = gray.shape[1:]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = []
    for g0, g1, u in zip(gray[:-1], gray[1:], flow):
        mx, my = xs + u[..., 0], ys + u[..., 1]
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        out.append(np.abs(cv2.remap(g1, mx, my, cv2.INTER_LINEAR) - g0)[inside].mean())
    return float(np.mean(out))


def _ms(x: float) -> str:
    return f"{x:.{0 if x >= 10 else 1}f}"


def _f(x: float, fmt: str) -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, fmt)


def render(results: list[Entry], cases: list, args, cmd: str, threads: str,
           zero_residual: float) -> str:
    from motionclr.bench.io import machine

    h, w = args.size
    base = next((e for e in results if e.method == "tvl1" and not e.skipped), None)
    base_cpu_ms = 1000 * base.cpu_seconds / base.pairs if base else float("nan")
    gpu = (f", GPU {torch.cuda.get_device_name(torch.device(args.device))}"
           if str(args.device).startswith("cuda") else "")
    lines = [
        "## Optical flow engines",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine()}{gpu}; device `{args.device}`; threads: {threads}",
        f"- Versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {_version('torchvision')}, OpenCV {cv2.__version__}, numpy {np.__version__}",
        f"- Command: `{cmd}`",
        f"- Speed: {args.pairs} consecutive pairs of each of {', '.join(S.CLIPS)} at {w}x{h} "
        f"(whole clip per call, batch size {args.batch_size} for torch methods); "
        + (f"median of {args.rounds} interleaved rounds (each round times every method once). "
           if args.rounds > 1 else "one run. ")
        + "pairs/s is wall-clock; \"CPU ms/pair\" is the process's CPU time, which other jobs on "
        "a shared machine disturb much less (for CUDA runs it only counts the host side).",
        "- EPE vs GT: synthetic suite at the same size (real texture warped by a known motion; "
        "mean end-point error over visible pixels 8 px from the border); "
        "\"<= 3 px\" is the mean over the zero, shift, rotate, zoom and moving-object cases.",
        "- EPE vs OpenCV: mean EPE against `tvl1` (OpenCV defaults) on the real pairs of each "
        "clip, all pixels. Where a clip's motion is beyond the capture range of OpenCV's "
        "default 0.8 pyramid, a method can be right and still far from OpenCV: the warp residual (mean |I1(x+u) - I0| in grey levels "
        "over both clips, lower is better; zero flow gives "
        f"{zero_residual:.2f}) is a ground-truth-free check.",
        "",
        "| method | pairs/s | ms/pair | CPU ms/pair | x OpenCV tvl1 (CPU time) | EPE vs GT <= 3 px "
        "| EPE vs GT 8 px shift "
        + "".join(f"| EPE vs tvl1 {name} " for name in S.CLIPS) + "| warp residual |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(S.CLIPS) + "---:|",
    ]
    for e in results:
        if e.skipped:
            lines.append(f"| {e.label} | skipped: {e.skipped} |" + " |" * (6 + len(S.CLIPS)))
            continue
        fps = e.pairs / e.seconds
        ms, cpu_ms = 1000 / fps, 1000 * e.cpu_seconds / e.pairs
        lines.append(f"| {e.label} | {fps:.2f} | {_ms(ms)} | {_ms(cpu_ms)} "
                     f"| {_f(base_cpu_ms / cpu_ms, '.2f')} "
                     f"| {_f(e.epe_small, '.4f')} | {_f(e.epe_large, '.4f')} "
                     + "".join(f"| {_f(e.epe_vs_tvl1.get(n, float('nan')), '.4f')} "
                               for n in S.CLIPS) + f"| {_f(e.residual, '.2f')} |")
    done = [e for e in results if not e.skipped]
    if done:
        lines += ["", "EPE vs ground truth per synthetic case (px):", "",
                  "| method | " + " | ".join(c.name for c in cases) + " |",
                  "|---|" + "---:|" * len(cases)]
        for e in done:
            lines.append(f"| {e.label} | " + " | ".join(_f(e.epe_cases[c.name], ".4f")
                                                       for c in cases) + " |")
    typed = [e for e in done if e.epe_types]
    if typed:
        types = list(typed[0].epe_types)
        base_t = next((e.epe_types for e in typed if e.method == "tvl1"), None)
        n_tex = len(S.MOTION_TEXTURES)
        lines += ["", "EPE vs ground truth per motion type (px; `motion_suite`: each type is "
                  f"2 motions x {n_tex} textures, the bigbuckbunny animation frame and two "
                  "frames of the sharp `bunny_wide` clip; rotate +-2 deg, zoom +-3 %, mixed = "
                  "rotation + zoom + shift; pixels 8 px from the border excluded). In "
                  "brackets: difference to OpenCV `tvl1`.", "",
                  "| method | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
        for e in typed:
            cells = []
            for t in types:
                v = e.epe_types[t]
                d = f" ({v - base_t[t]:+.3f})" if base_t and e.method != "tvl1" else ""
                cells.append(_f(v, ".4f") + d)
            lines.append(f"| {e.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"




def _size(s: str) -> tuple[int, int]:
    w, h = (int(v) for v in s.lower().split("x"))
    return h, w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="motionclr bench flow", description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8, help="real pairs per clip for speed / parity")
    ap.add_argument("--device", default="cpu", help="torch device for torch methods "
                    "(auto = CUDA when present)")
    ap.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update")
    ap.add_argument("--size", type=_size, default=(256, 340), help="WxH, default 340x256")
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per batch (torch methods)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch and OpenCV CPU threads (0: leave the libraries' defaults)")
    ap.add_argument("--methods", default="", help="comma list to run a subset (default: all)")
    ap.add_argument("--raft-small", default="", help="local raft_small state_dict")
    ap.add_argument("--raft-large", default="", help="local raft_large state_dict")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved timing rounds (medians reported; 1: time while scoring)")
    ap.add_argument("--no-motion-suite", action="store_true",
                    help="skip the per-motion-type GT table (27 more pairs per method)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    args.device = str(resolve_device(args.device))  # auto -> cuda | cpu; absent CUDA: one line

    if args.threads > 0:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    threads = f"torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}"
    clips = [S.load_clip(name, args.size, start=0, n_frames=args.pairs + 1) for name in S.CLIPS]
    cases = S.synthetic_suite(args.size)
    motion_cases = S.motion_suite(args.size) if not args.no_motion_suite else []
    results, ref = entries(args), None
    # Interleaved timing: round r times every method once before round r + 1, so load from
    # other jobs on a shared machine falls on all methods alike; medians are reported.
    for r in range(args.rounds if args.rounds > 1 else 0):
        for e in results:
            if not e.skipped:
                time_entry(e, clips, args.device)
        print(f"timing round {r + 1}/{args.rounds} done", flush=True)
    for e in results:
        if e.skipped:
            print(f"{e.label}: skipped ({e.skipped})", flush=True)
            continue
        flows = run_entry(e, clips, cases, ref, args.device, motion_cases)
        if e.method == "tvl1" and ref is None:
            ref = flows
            e.epe_vs_tvl1 = {name: 0.0 for name in S.CLIPS}
        print(f"{e.label}: {e.pairs / e.seconds:.2f} pairs/s, "
              f"{1000 * e.cpu_seconds / e.pairs:.0f} CPU ms/pair, EPE<=3px {e.epe_small:.4f}, "
              f"8px {e.epe_large:.4f}, vs tvl1 {e.epe_vs_tvl1}, residual {e.residual:.2f}, "
              f"GT per type {({k: round(v, 4) for k, v in e.epe_types.items()})}",
              flush=True)
    zero_residual = float(np.mean([photometric_residual(c, np.zeros(c.shape[:3] + (2,),
                                                                      np.float32)[1:])
                                   for c in clips]))
    cmd = " ".join(["motionclr bench flow"] + argv)
    body = render(results, cases, args, cmd, threads, zero_residual)
    print(body)
    if not args.no_write:
        write_section(Path(args.out), body, "flow")
        print(f"updated {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
