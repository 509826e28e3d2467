"""Pretraining: one explicit ``train_one_epoch`` and the ``train`` driver around it.

``train`` gets its data from the caller (the flow stage, a loader of the motion index, an
optional per-epoch monitor): ``motionclr.pretrain`` finds those in the pipeline and eval,
so that training imports neither (``tests/test_layering.py``).

Features: per-iteration LR (warm-up + cosine) and key-encoder momentum schedules, SGD or
Adam, gradient clipping, AMP on CUDA, a non-finite-loss guard, a checkpoint every epoch
(written atomically) with exact resume, CSV log, tqdm, and torchrun/DDP.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from motionclr import interrupts, provenance
from motionclr.atomic import atomic_write
from motionclr.config import Config, save_config
from motionclr.datasets.distributed import TrainShardSampler
from motionclr.datasets.shard_dataset import ShardClipDataset, batch_to_device
from motionclr.devices import resolve_device
from motionclr.storage.warm import direct_for, warm
from motionclr.train.checkpoint import load_weights, read_checkpoint
from motionclr.train.methods import build_method
from motionclr.train.optim import build_optimizer, optimizer_step
from motionclr.train.resume import check_resume
from motionclr.train.schedules import cosine_schedule
from motionclr.utils import dist_info, seed_everything

LOG_FIELDS = ["epoch", "step", "lr", "momentum", "loss", "seconds"]


def train_one_epoch(model, loader, optimizer, lr_sched, m_sched, epoch: int, cfg: Config,
                    device: torch.device, log_rows: list, scaler=None, progress=True) -> dict:
    """One pass over ``loader`` (``epoch`` 0-based; shown and logged as ``epoch + 1``);
    returns the epoch's mean of each logged value."""
    from tqdm import tqdm
    method = model.module if hasattr(model, "module") else model
    model.train()
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.train.seed * 100_003 + epoch)  # augmentation replays on resume
    it_per_epoch = len(loader)
    sums: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress,
               mininterval=1.0, leave=False)
    for i, batch in enumerate(bar):
        interrupts.check()  # a Ctrl-C swallowed while the loader forked its workers
        step = epoch * it_per_epoch + i
        for g in optimizer.param_groups:
            g["lr"] = float(lr_sched[step])
        batch = batch_to_device(batch, device)
        with torch.autocast(device.type, enabled=scaler is not None):
            loss, logs = model(batch, gen)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch} step {i}; "
                                     "lower train.lr or enable train.grad_clip")
        optimizer_step(loss, optimizer, method.parameters(), cfg.train.grad_clip, scaler)
        method.momentum_update(float(m_sched[step]))
        vals = {k: float(v) for k, v in logs.items()}
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + v
        if i % max(cfg.train.log_every, 1) == 0 or i == it_per_epoch - 1:
            log_rows.append({"epoch": epoch + 1, "step": step, "lr": float(lr_sched[step]),
                             "momentum": float(m_sched[step]), "seconds": time.perf_counter() - t0,
                             **vals})
        bar.set_postfix(loss=f"{vals['loss']:.3f}", lr=f"{lr_sched[step]:.2e}")
    return {k: v / max(it_per_epoch, 1) for k, v in sums.items()}


def _save_checkpoint(path: Path, state: dict) -> None:
    # A full disk: one StorageError line, the previous checkpoint intact (motionclr.atomic).
    atomic_write(path, lambda f: torch.save(state, f), kept="the last checkpoint is kept; ")


def _append_log(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(LOG_FIELDS + [k for r in rows for k in r]))
    new = not path.is_file()
    if not new:
        with open(path) as f:
            header = next(csv.reader(f), [])
        fields = list(dict.fromkeys(header + fields))
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields if new else header, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


def _truncate_log(path: Path, start_epoch: int) -> None:
    """Drop rows of epochs that the checkpoint does not cover (a kill between log and save);
    rows count epochs from 1, so the first ``start_epoch`` epochs stay."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= start_epoch]
    if len(keep) != len(rows):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(keep)


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.train.run or f"runs/{cfg.data.dataset}-{cfg.method.name}")


def open_run(run: Path, cfg: Config, stage: Path) -> tuple[dict | None, dict]:
    """(checkpoint or None, what a resume changes); refuses a foreign checkpoint or a config
    that may not continue it (``train/resume.py``). Writes nothing."""
    ckpt_path = run / "checkpoint.pt"
    if not ckpt_path.is_file():
        return None, {"from_epoch": 0, "changed": {}}
    ckpt = read_checkpoint(ckpt_path)
    return ckpt, check_resume(ckpt, cfg, stage, run)


def start_run_dir(run: Path, cfg: Config, resume: dict) -> None:
    """After the checks: the run directory, its config.yaml and a provenance line."""
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    provenance.record(run, "pretrain", {"resume": resume})


def schedule_history(ckpt: dict | None, cfg: Config) -> list[dict]:
    """[{"from_epoch", "epochs"}]: the schedule lengths the run's epochs were trained under
    (``from_epoch`` counts finished epochs); grows when a resume changes train.epochs."""
    hist = list(ckpt.get("schedules", [])) if ckpt else []
    if ckpt and not hist:  # a checkpoint from before this record: its own config's length
        hist = [{"from_epoch": 0, "epochs": int(ckpt["config"]["train"]["epochs"])}]
    if not hist or hist[-1]["epochs"] != cfg.train.epochs:
        hist.append({"from_epoch": int(ckpt["epoch"]) + 1 if ckpt else 0,
                     "epochs": cfg.train.epochs})
    return hist


def announce(run: Path, start_epoch: int, epochs: int, resume: dict) -> None:
    """Epochs are counted from 1 everywhere a person reads them (bar, summary, JSON, CSV)."""
    if start_epoch == 0:
        print(f"pretrain: starting new run {run} ({epochs} epochs)")
    elif start_epoch >= epochs:
        print(f"pretrain: {run} is complete ({start_epoch}/{epochs} epochs)")
    else:
        print(f"pretrain: resuming {run} after epoch {start_epoch}/{epochs}")
    for key, (old, new) in resume["changed"].items():
        note = (f"; the LR and momentum schedules now span {new} epochs from epoch "
                f"{start_epoch + 1} on" if key == "train.epochs" else "")
        print(f"pretrain: {key} {old} -> {new} on resume{note}")


def train(cfg: Config, stage: Path, progress: bool = True, load_index=None,
          monitor=None) -> Path:
    """Train ``cfg.method`` on the flow stage ``stage``; resumes from ``<run>/checkpoint.pt``.

    ``load_index()`` returns the motion index (called when the method needs one);
    ``monitor(model, stage, cfg, device, epoch, path)`` runs every ``train.knn_every``
    epochs on rank 0 (``motionclr.pretrain.knn_monitor``; ``epoch`` counts finished
    epochs from 1). Everything that can refuse (device, checkpoint, resume consistency)
    runs before the run directory is written to.
    """
    rank, world, local_rank = dist_info()
    device = resolve_device(cfg.train.device, local_rank if world > 1 else None)
    run = run_dir_of(cfg)
    ckpt, resume = open_run(run, cfg, stage)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if rank == 0:
        start_run_dir(run, cfg, resume)
    seed_everything(cfg.train.seed + rank)

    model = build_method(cfg).to(device)
    if world > 1 and device.type == "cuda" and cfg.method.shuffle_bn <= 1:
        # synchronised statistics; with shuffle-BN each rank keeps its own (as MoCo does)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    index = None
    if getattr(model, "needs_index", False):
        if load_index is None:
            raise ValueError(f"method {cfg.method.name} needs the motion index: pass load_index")
        with provenance.scope():
            index = load_index()
    ds = ShardClipDataset(stage, "train", cfg.data.split, sampler=model.sampler(),
                          train=True, modalities=model.modalities, index=index, seed=cfg.train.seed)
    ds.direct, why = direct_for(ds.shard_paths(), cfg.data.direct)
    if progress and rank == 0 and ds.direct:
        print(f"pretrain: clips bypass the page cache: read with O_DIRECT ({why})")
    if local_rank == 0 and not ds.direct:  # once per machine: ranks share the page cache
        warmed = warm(ds.shard_paths(), cfg.data.warm)
        if progress and rank == 0:
            print("pretrain: shards not read ahead (data.warm): " + warmed["skipped"]
                  if "skipped" in warmed else
                  f"pretrain: {warmed['bytes'] / 2**20:,.0f} MiB of shards read into the page "
                  f"cache in {warmed['seconds']:.1f} s (data.warm)")
    per_rank_batch = cfg.train.batch_size // world
    if len(ds) < per_rank_batch * world:
        raise ValueError(f"{len(ds)} training videos < train.batch_size={cfg.train.batch_size}")
    # Equal steps on every rank, an epoch-determined order (replays exactly on resume).
    # The indices carry their epoch, so workers persist across epochs: their shard
    # handles, chunk tables and record of frames already checked (storage/frame_reader.py)
    # are kept instead of rebuilt every epoch.
    sampler = TrainShardSampler(len(ds), world, rank, seed=cfg.train.seed, epoch_tagged=True)
    loader = DataLoader(ds, batch_size=per_rank_batch, sampler=sampler, drop_last=True,
                        num_workers=cfg.train.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.train.num_workers > 0)
    lr = cfg.train.lr * cfg.train.batch_size / 256
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg, lr)
    ipe = len(loader)
    lr_sched = cosine_schedule(lr, 0.0, cfg.train.epochs, ipe, cfg.train.warmup_epochs)
    m_sched = cosine_schedule(cfg.method.momentum, 1.0, cfg.train.epochs, ipe)
    scaler = torch.amp.GradScaler("cuda") if cfg.train.amp and device.type == "cuda" else None
    schedules = schedule_history(ckpt, cfg)

    start_epoch = 0
    ckpt_path = run / "checkpoint.pt"
    if ckpt is not None:
        load_weights(model, ckpt["model"], ckpt_path)
        load_weights(optimizer, ckpt["optimizer"], ckpt_path)
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch = ckpt["epoch"] + 1
        del ckpt
    if rank == 0:
        _truncate_log(run / "log.csv", start_epoch)
        if progress:
            announce(run, start_epoch, cfg.train.epochs, resume)
    tb = None
    if rank == 0 and cfg.train.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        # purge_step drops events a killed run wrote past its last checkpoint (as the CSV)
        tb = SummaryWriter(str(run / "tb"), purge_step=start_epoch * ipe if start_epoch else None)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)

    for epoch in range(start_epoch, cfg.train.epochs):
        interrupts.check()
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        if hasattr(model, "set_epoch"):  # methods with epoch-dependent loss weights (MCL)
            model.set_epoch(epoch)
        rows: list[dict] = []
        t0 = time.perf_counter()
        means = train_one_epoch(net, loader, optimizer, lr_sched, m_sched, epoch, cfg, device,
                                rows, scaler, progress and rank == 0)
        if rank == 0:
            _append_log(run / "log.csv", rows)
            if tb is not None:
                for r in rows:
                    for k, v in r.items():
                        if k not in ("epoch", "step"):
                            tb.add_scalar(f"train/{k}", v, r["step"])
                tb.flush()
            _save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler else None, "epoch": epoch,
                "step": (epoch + 1) * ipe, "schedules": schedules,
                "config": cfg.to_dict(), "stage": str(stage), "motionclr_checkpoint": 1})
            if progress:
                msg = " ".join(f"{k}={v:.4f}" for k, v in means.items())
                print(f"epoch {epoch + 1}/{cfg.train.epochs} {msg} "
                      f"({time.perf_counter() - t0:.1f}s)", flush=True)
        if rank == 0 and monitor is not None and cfg.train.knn_every > 0 and \
                (epoch + 1) % cfg.train.knn_every == 0:
            monitor(model, stage, cfg, device, epoch + 1, run / "knn.csv")
        if not math.isfinite(means.get("loss", 0.0)):
            raise FloatingPointError("non-finite mean loss")
    if tb is not None:
        tb.close()
    if world > 1:
        torch.distributed.barrier()
    return run
