"""The CLI end to end on a tiny synthetic dataset: generate -> flow -> pretrain -> retrieval."""
import json
import subprocess
import sys

from tests.conftest import tiny_overrides


def _cli(*args, check=True):
    res = subprocess.run([sys.executable, "-m", "motionclr", *args], capture_output=True,
                         text=True, timeout=600)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_cli_pipeline(tmp_path, tiny_root):
    run = tmp_path / "run"
    over = tiny_overrides(tiny_root, tmp_path / "cache") + [f"train.run={run}",
                                                           "train.epochs=2", "train.knn_every=1"]
    out = _cli("flow", *over).stdout
    assert "flow-" in out
    assert "cache hit" in _cli("flow", *over).stdout
    _cli("pretrain", *over)
    assert (run / "checkpoint.pt").is_file() and (run / "config.yaml").is_file()
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,lr") and len(log) >= 3
    knn = (run / "knn.csv").read_text().splitlines()   # the optional per-epoch monitor
    assert knn[0] == "epoch,knn_top1" and [r.split(",")[0] for r in knn[1:]] == ["1", "2"]
    assert all(0.0 <= float(r.split(",")[1]) <= 1.0 for r in knn[1:])
    res = _cli("eval", "retrieval", "--run", str(run), f"data.root={tiny_root}")
    assert "R@1" in res.stdout
    result = json.loads((run / "retrieval.json").read_text())
    assert result["protocol"]["n_query"] == 8 and result["protocol"]["n_gallery"] == 8
    assert set(result["recall"]) == {"1", "5", "10", "20", "50"}
    assert result["recall"]["50"] == 1.0


def test_resume_continues_from_checkpoint(tmp_path, tiny_root):
    run = tmp_path / "run"
    over = tiny_overrides(tiny_root, tmp_path / "cache") + [f"train.run={run}"]
    _cli("flow", *over)
    _cli("pretrain", *over, "train.epochs=1")
    first = (run / "log.csv").read_text().splitlines()
    res = _cli("pretrain", *over, "train.epochs=2")
    assert "resuming" in res.stdout
    log = (run / "log.csv").read_text().splitlines()
    assert log[: len(first)] == first and {r.split(",")[0] for r in log[1:]} == {"1", "2"}
    # TensorBoard holds the CSV's loss values at the CSV's steps, across the resume
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(run / "tb"))
    ev.Reload()
    rows = [dict(zip(log[0].split(","), r.split(","))) for r in log[1:]]
    got = [(e.step, e.value) for e in ev.Scalars("train/loss")]
    assert [s for s, _ in got] == [int(r["step"]) for r in rows]
    assert all(abs(v - float(r["loss"])) < 1e-5 * max(1, abs(v)) for (_, v), r in zip(got, rows))


def test_bad_config_key_fails_at_once_with_choices(tmp_path):
    res = _cli("pretrain", "train.epoch=3", check=False)
    assert res.returncode == 2
    assert "unknown config key 'train.epoch'" in res.stderr and "epochs" in res.stderr


def test_killed_training_resumes_with_identical_losses(tmp_path, tiny_root):
    """kill -9 after the first checkpoint, rerun: later epochs match an uninterrupted run."""
    import csv
    import os
    import signal
    import time
    over = tiny_overrides(tiny_root, tmp_path / "cache") + ["train.epochs=3", "train.log_every=1"]
    _cli("flow", *over)
    _cli("pretrain", *over, f"train.run={tmp_path / 'full'}")
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "motionclr", "pretrain", *over,
                             f"train.run={run}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    import torch
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] < 2  # interrupted
    assert "resuming" in _cli("pretrain", *over, f"train.run={run}").stdout

    def losses(p):
        with open(p / "log.csv") as f:
            return [(r["epoch"], r["step"], float(r["loss"])) for r in csv.DictReader(f)]
    assert losses(run) == losses(tmp_path / "full")


def test_loader_workers_train_exactly_as_the_main_process(tmp_path, tiny_root):
    """Persistent DataLoader workers get each epoch through the sampler's (epoch, index)
    pairs: 2 workers over 3 epochs log the same losses as reading in the main process (a
    worker stuck on epoch 0's clips would repeat them and the losses would differ)."""
    import csv
    over = tiny_overrides(tiny_root, tmp_path / "cache") + ["train.epochs=3", "train.log_every=1"]
    _cli("flow", *over)
    for w in (0, 2):
        _cli("pretrain", *over, f"train.num_workers={w}", f"train.run={tmp_path / f'w{w}'}")

    def losses(p):
        with open(p / "log.csv") as f:
            return [(r["epoch"], r["step"], float(r["loss"])) for r in csv.DictReader(f)]
    assert len(losses(tmp_path / "w0")) >= 3
    assert losses(tmp_path / "w2") == losses(tmp_path / "w0")
