"""Cross-video batched flow: one process per device, pairs from several videos per batch.

The per-video path (``flow_stage._run_parallel``) runs one video per joblib worker, which suits
CPUs. A GPU wants large batches and must never wait for ffmpeg, so on CUDA the flow stage
runs this instead:

* a decode thread pool (``pipeline.workers`` threads; ffmpeg runs in subprocesses, so
  threads overlap) claims videos in the stage's ledger and decodes them into a bounded queue;
* the batcher moves each decoded video to the device as grey frames and packs its frame
  pairs, together with other videos' pairs of the same frame size, into fixed-size batches
  (``batch_size`` pairs; the last ones of a size are smaller) for ``tvl1_pairs``;
* results are scattered back per video; a video whose last pair is done is quantised and
  written as its part by a writer thread while the device runs the next batch.

Several devices: ``flow.device=cuda`` with several GPUs visible starts one process per GPU
(``cuda:0``, ``cuda:1``, ...) on the same stage directory; the per-video claims keep them from
computing a video twice, exactly as with several hosts or ``--shard`` slices. The same code
runs on CPU (``devices=["cpu", ...]``), which is how it is tested.

The parts written here are the same as the per-video path's: same frames, same attributes,
and the flow of the same pairs (``tvl1_pairs`` gives a pair the same answer in any batch).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from motionclr.config import Config
from motionclr.errors import UserError
from motionclr.datasets.sources import VideoEntry
from motionclr.pipeline.claims import claim, release
from motionclr.storage import shards
from motionclr.pipeline.cache import file_digest
from motionclr.pipeline.decode import DecodeError, decode_video
from motionclr.pipeline.failures import environment_failure, is_environment_error

# Methods whose pairs can be batched across videos (they only need same-size pairs).
BATCHED_METHODS = ("tvl1_torch",)
DEFAULT_BATCH = 32  # pairs per batch on a GPU when flow.params has no batch_size


def wanted(cfg: Config) -> bool:
    """The flow stage uses this path for batchable methods on CUDA devices."""
    return cfg.flow.method in BATCHED_METHODS and str(cfg.flow.device).startswith("cuda")


def cpu_threads(workers: int) -> int:
    """Torch intra-op threads for one of ``workers`` concurrent CPU flow workers, so that
    workers x threads does not exceed the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def pin_cpu_threads(cfg: Config) -> None:
    """Called in each per-video worker before flow runs on the CPU: with ``w`` > 1 concurrent
    workers, torch and OpenCV each get cores // w threads (left alone for one worker, which
    runs in the calling process). Torch's default is every core in every worker process, so
    2 workers on 2 cores would run 4 busy threads."""
    workers = max(1, cfg.pipeline.workers)
    if workers == 1 or str(cfg.flow.device).startswith("cuda"):
        return
    n = cpu_threads(workers)
    if cfg.flow.method in ("tvl1", "farneback", "dis"):
        import cv2
        if cv2.getNumThreads() != n:
            cv2.setNumThreads(n)
    else:
        import torch
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def devices_for(device: str) -> list[str]:
    """``cuda`` with several visible GPUs -> one entry per GPU; anything else -> itself."""
    if device == "cuda":
        import torch
        n = torch.cuda.device_count()
        if n > 1:
            return [f"cuda:{i}" for i in range(n)]
    return [device]


@dataclass
class _Video:
    """A decoded video waiting for its pairs' flow."""

    entry: VideoEntry
    frames: np.ndarray          # uint8 (T, H, W, 3)
    info: dict
    digest: str
    t0: float
    gray: object = None         # float32 (T, H, W) on the device
    flow: np.ndarray = None     # float32 (T-1, H, W, 2), filled batch by batch
    todo: int = 0               # pairs not yet computed
    next_pair: int = 0          # first pair not yet put in a batch
    extra: dict = field(default_factory=dict)


def _flow_params(cfg: Config) -> tuple[dict, int]:
    """``tvl1_pairs`` parameters and the batch size, from ``flow.params``."""
    from motionclr.flow.tvl1_torch import resolve_params
    params = dict(cfg.flow.params)
    batch = int(params.pop("batch_size", DEFAULT_BATCH))
    if batch < 1:
        raise ValueError(f"flow.params.batch_size must be >= 1, got {batch}")
    preset = params.pop("preset", "opencv")
    resolve_params(preset, **params)  # unknown names fail before any video is claimed
    return {"preset": preset, **params}, batch


def _attrs(v: _Video, cfg: Config, flow: np.ndarray) -> dict:
    # the same attributes as flow_stage.process_video writes (tests compare the parts)
    from motionclr.pipeline.flow_stage import part_attrs
    return part_attrs(cfg, v.entry, v.digest, v.info, flow)


class _Runner:
    """One device's loop: decode pool -> batcher -> writer (see the module docstring)."""

    def __init__(self, todo: list[VideoEntry], cfg: Config, parts_dir: Path, device: str,
                 on_result=None, threads: int = 0):
        self.todo, self.cfg, self.parts_dir, self.device = todo, cfg, parts_dir, device
        self.threads = threads  # CPU devices: torch threads for this process (0: leave)
        self.params, self.batch = _flow_params(cfg)
        self.workers = max(1, cfg.pipeline.workers)
        # decoded videos waiting for the device; bounded so decoding cannot run far ahead
        self.decoded: queue.Queue = queue.Queue(maxsize=2 * self.workers)
        self.results: list[dict] = []
        self.on_result = on_result
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pairs = 0
        self.batches = 0

    # -- decode side (threads) ------------------------------------------------------------

    def _decode(self, entry: VideoEntry) -> None:
        from motionclr.pipeline.flow_stage import _event, _storage
        t0 = time.perf_counter()
        pd = self.parts_dir
        if shards.part_status(pd, entry.video_id) or not claim(pd, entry.video_id):
            return self._result({"video_id": entry.video_id, "status": "skipped", "frames": 0,
                                 "seconds": 0.0})
        if shards.part_status(pd, entry.video_id):
            release(pd, entry.video_id)
            return self._result({"video_id": entry.video_id, "status": "skipped",
                                 "frames": 0, "seconds": 0.0})
        try:
            if not entry.path.is_file():
                raise DecodeError(f"file not found: {entry.path}")
            digest = file_digest(entry.path)
            d = self.cfg.decode
            frames, info = decode_video(entry.path, short_side=d.short_side, fps=d.fps,
                                        timeout=d.timeout, max_frames=d.max_frames)
            if info["n_frames"] < 2:
                raise DecodeError(f"only {info['n_frames']} frame decoded: flow needs at "
                                  "least 2")
        except Exception as e:  # noqa: BLE001 - one bad video is recorded, the run goes on
            if is_environment_error(e):  # the machine's fault: stop, record nothing
                release(pd, entry.video_id)
                raise environment_failure(e, entry.video_id) from e
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, DecodeError) else str(e)
            try:
                with _storage(pd):
                    shards.write_failure(pd, entry.video_id, str(entry.path), reason)
                    _event(pd, entry.video_id, "failed", time.perf_counter() - t0, reason)
            finally:
                release(pd, entry.video_id)
            return self._result({"video_id": entry.video_id, "status": "failed",
                                 "reason": reason, "frames": 0,
                                 "seconds": time.perf_counter() - t0})
        v = _Video(entry, frames, info, digest, t0)
        while True:  # bounded queue; give up (and release the claim) if the run is aborting
            try:
                self.decoded.put(v, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    release(pd, entry.video_id)
                    return

    def _result(self, r: dict) -> None:
        with self.lock:
            self.results.append(r)
        if self.on_result is not None:
            self.on_result(r)

    # -- device side (the calling thread) -------------------------------------------------

    def _finish(self, v: _Video) -> None:
        """Quantise and write one video's part (writer thread)."""
        from motionclr.flow import quantize
        from motionclr.pipeline.flow_stage import _event, _storage
        pd = self.parts_dir
        try:
            with _storage(pd):
                q = quantize(v.flow, self.cfg.flow.bound)
                shards.write_part(pd, v.entry.video_id, v.frames, q, _attrs(v, self.cfg, v.flow),
                                  compression=self.cfg.pipeline.compression)
                _event(pd, v.entry.video_id, "done", time.perf_counter() - v.t0)
        finally:
            release(pd, v.entry.video_id)
        self._result({"video_id": v.entry.video_id, "status": "done",
                      "frames": v.info["n_frames"], "seconds": time.perf_counter() - v.t0})

    def _run_batch(self, pending: list[_Video], writer, writes: list) -> None:
        """Take up to ``batch`` pairs from the videos of one size (oldest first) and run them."""
        import torch
        from motionclr.flow.tvl1_torch import tvl1_pairs
        take, n = [], 0
        for v in pending:
            k = min(self.batch - n, len(v.flow) - v.next_pair)
            if k > 0:
                take.append((v, v.next_pair, k))
                v.next_pair += k
                n += k
            if n == self.batch:
                break
        if not take:
            return
        i0 = torch.cat([v.gray[s:s + k] for v, s, k in take])
        i1 = torch.cat([v.gray[s + 1:s + k + 1] for v, s, k in take])
        flow = tvl1_pairs(i0, i1, **self.params).cpu().numpy()
        self.pairs += n
        self.batches += 1
        o = 0
        for v, s, k in take:
            v.flow[s:s + k] = flow[o:o + k]
            o += k
            v.todo -= k
            if v.todo == 0:
                v.gray = None  # free device memory before the write
                pending.remove(v)
                writes.append(writer.submit(self._finish, v))

    def run(self) -> list[dict]:
        import torch
        from motionclr.flow.tvl1_torch import rgb_to_gray
        dev = torch.device(self.device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        elif self.threads:
            torch.set_num_threads(self.threads)
        pending: dict[tuple, list[_Video]] = {}   # (H, W) -> videos with pairs left
        writes: list = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
            futures = [pool.submit(self._decode, e) for e in self.todo]
            try:
                while True:
                    all_decoded = all(f.done() for f in futures)
                    try:
                        v = self.decoded.get(timeout=0.05)
                    except queue.Empty:
                        v = None
                    if v is not None:
                        x = torch.from_numpy(v.frames).to(dev)
                        v.gray = rgb_to_gray(x)
                        t, h, w = v.gray.shape
                        v.flow = np.empty((t - 1, h, w, 2), np.float32)
                        v.todo = t - 1
                        pending.setdefault((h, w), []).append(v)
                        # full batches as soon as they can be formed
                        for vids in pending.values():
                            while sum(len(x.flow) - x.next_pair for x in vids) >= self.batch:
                                self._run_batch(vids, writer, writes)
                        continue
                    if all_decoded and self.decoded.empty():
                        # nothing more will come: the remaining (partial) batches
                        for vids in pending.values():
                            while vids:
                                self._run_batch(vids, writer, writes)
                        break
                    # the decoders are behind: rather than idle, run the fullest partial batch
                    # once enough videos wait (bounded memory), else wait for more input
                    waiting = sum(len(vids) for vids in pending.values())
                    if waiting > 2 * self.workers:
                        size = max(pending, key=lambda s: len(pending[s]))
                        self._run_batch(pending[size], writer, writes)
                for f in futures + writes:
                    f.result()  # re-raise a storage error from a decode or write
            except BaseException:
                self.stop.set()
                for f in futures:
                    f.cancel()
                for vids in pending.values():
                    for v in vids:
                        release(self.parts_dir, v.entry.video_id)
                while not self.decoded.empty():
                    release(self.parts_dir, self.decoded.get_nowait().entry.video_id)
                raise
        return self.results


def _child(todo, cfg, parts_dir, device, threads) -> list[dict]:
    return _Runner(todo, cfg, parts_dir, device, threads=threads).run()


def run_batched(todo: list[VideoEntry], cfg: Config, parts_dir: Path, progress: bool = True,
                devices: list[str] | None = None) -> list[dict]:
    """Compute ``todo`` with cross-video batches; returns per-video results like the per-video
    path. ``devices`` (default: ``devices_for(flow.device)``): one process per entry when
    there are several, each taking the list from a different start on the same ledger."""
    from tqdm import tqdm
    import torch
    devices = devices or devices_for(str(cfg.flow.device))
    _flow_params(cfg)  # bad parameters: one clear error before any process starts
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        raise UserError(f"flow.device={cfg.flow.device} but no CUDA device is visible to torch; "
                        "use flow.device=cpu (or DEVICE=cpu)")
    bar = tqdm(total=len(todo), unit="video", disable=not progress, desc="flow")
    if len(devices) == 1:
        r = _Runner(todo, cfg, parts_dir, devices[0], on_result=lambda _: bar.update(1)).run()
        bar.close()
        return r
    import multiprocessing as mp
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    n = len(devices)
    step = max(1, len(todo) // n)
    with ctx.Pool(n) as pool:
        # CPU processes share the cores (GPU processes each drive their own device)
        jobs = [pool.apply_async(_child, (todo[i * step:] + todo[:i * step], cfg, parts_dir, d,
                                          cpu_threads(n)))
                for i, d in enumerate(devices)]
        results = []
        for j in jobs:
            results += j.get()
            bar.update(0)
    bar.close()
    # each video is claimed by one process; the others report it as skipped
    done = {r["video_id"]: r for r in results if r["status"] != "skipped"}
    skipped = {r["video_id"]: r for r in results if r["status"] == "skipped"}
    return list(done.values()) + [r for k, r in skipped.items() if k not in done]


__all__ = ["run_batched", "wanted", "pin_cpu_threads", "cpu_threads", "devices_for",
           "BATCHED_METHODS", "DEFAULT_BATCH"]
