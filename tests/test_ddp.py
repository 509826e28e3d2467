"""Two CPU processes (gloo): gradients, parameters and queues stay identical across ranks."""
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from motionclr.config import load_config
from tests.conftest import tiny_overrides


def _worker(rank: int, world: int, init_file: str, out_dir: str, shuffle_bn: int = 1):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)  # same init on both ranks, as torchrun + seed_everything gives
    from motionclr.train.methods import build_method
    cfg = load_config(None, tiny_overrides(".", ".", **{"model.backbone": "small3d",
                                                       "method.shuffle_bn": shuffle_bn}))
    model = build_method(cfg)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + rank)  # different data on each rank
    batch = {"rgb": torch.randint(0, 255, (4, 2, 3, 4, 32, 32), dtype=torch.uint8,
                                  generator=g)}
    for _ in range(2):
        loss, _ = ddp(batch, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.momentum_update(0.9)
    torch.save({"params": torch.cat([p.detach().flatten() for p in model.parameters()]),
                "queue": model.queue.clone(), "ptr": int(model.queue_ptr),
                "grad": torch.cat([p.grad.flatten() for p in model.parameters()
                                   if p.grad is not None])},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("shuffle_bn", [1, 2])  # 2: split per rank, keys shuffled across
def test_two_process_gloo_keeps_ranks_consistent(tmp_path, shuffle_bn):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), shuffle_bn), nprocs=2,
             join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["grad"], r1["grad"])          # all-reduced gradients
    assert torch.equal(r0["params"], r1["params"])
    assert torch.equal(r0["queue"], r1["queue"])        # keys gathered from both ranks
    assert r0["ptr"] == r1["ptr"] == 2 * 2 * 4          # 2 steps x 2 ranks x batch 4


def _shuffle_worker(rank: int, world: int, init_file: str, out_dir: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    from motionclr.train.shuffle_bn import shuffled
    x = (torch.arange(8.0) + 100 * rank)[:, None]  # rank 0: 0..7, rank 1: 100..107
    seen = []

    def fn(z):  # row-wise, records which clips this rank's key encoder saw
        seen.append(z[:, 0].clone())
        return z * 2
    g = torch.Generator().manual_seed(100 + rank)  # each rank's own draws: rank 0's wins
    out = shuffled(fn, x, g)
    try:
        shuffled(fn, x[:7 if rank == 0 else 8], g)
        unequal = "no error"
    except ValueError as e:
        unequal = str(e)
    torch.save({"out": out, "seen": seen[0], "unequal": unequal},
               os.path.join(out_dir, f"shuffle{rank}.pt"))
    dist.destroy_process_group()


def test_shuffled_keys_mix_the_ranks_and_come_back_in_order(tmp_path):
    """MoCo's cross-GPU shuffle: each rank encodes a random share of all ranks' clips, and
    every output returns to its own rank and row."""
    mp.spawn(_shuffle_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
             join=True)
    r0, r1 = (torch.load(tmp_path / f"shuffle{r}.pt") for r in (0, 1))
    assert torch.equal(r0["out"][:, 0], 2 * torch.arange(8.0))
    assert torch.equal(r1["out"][:, 0], 2 * (torch.arange(8.0) + 100))
    # together the ranks encoded every clip once, and each saw clips of the other rank
    both = torch.cat([r0["seen"], r1["seen"]]).sort().values
    assert torch.equal(both, torch.cat([torch.arange(8.0), torch.arange(8.0) + 100]))
    assert (r0["seen"] >= 100).any() and (r1["seen"] < 100).any()
    for r in (r0, r1):
        assert "equal batches" in r["unequal"] and "[7, 8]" in r["unequal"]


TRANSIENT = ("Address already in use", "RendezvousTimeoutError", "RendezvousConnectionError",
             "Connection refused", "Connection reset")


@pytest.mark.slow
def test_torchrun_pretrain_two_processes(tmp_path, tiny_root):
    run = tmp_path / "run"
    over = tiny_overrides(tiny_root, tmp_path / "cache") + [f"train.run={run}",
                                                           "train.batch_size=4"]
    subprocess.run([sys.executable, "-m", "motionclr", "flow", *over], check=True,
                   capture_output=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "motionclr", "pretrain", *over]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0 and any(s in res.stderr for s in TRANSIENT):
        # The launcher's free-port pick can race with other processes on a busy machine:
        # that is the rendezvous failing, not the code under test; one more try.
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 0
    rows = (run / "log.csv").read_text().splitlines()[1:]
    # 8 train videos, global batch 4 (2 per rank): 2 synchronised steps, logged by rank 0 only.
    assert len(rows) == len({r.split(",")[1] for r in rows}) == 2
    # The checkpoint of a 2-process run resumes in a single process (any world size).
    res = subprocess.run([sys.executable, "-m", "motionclr", "pretrain", *over,
                          "train.epochs=2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "resuming" in res.stdout, res.stderr[-2000:]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
