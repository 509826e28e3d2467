"""One line, not a traceback: foreign checkpoints on resume, absent CUDA, Ctrl-C, viz and
bench errors; the Makefile's eval targets pass only what the user set."""
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from motionclr.devices import resolve_device
from motionclr.errors import UserError
from tests.conftest import tiny_overrides

REPO = Path(__file__).resolve().parent.parent
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _cli(*args, cwd=None, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "motionclr", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


def _one_line_error(res, *needles):
    assert res.returncode == 2, (res.stdout[-1000:], res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    err = [ln for ln in res.stderr.splitlines() if ": error: " in ln]
    assert len(err) == 1, res.stderr[-3000:]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def _refused_before_writing(tiny_stage, tmp_path, setting: str, *needles):
    """``pretrain`` with ``setting`` fails in one line holding ``needles``. Returns
    (config, run directory, overrides) for more checks."""
    cfg, _ = tiny_stage
    run = tmp_path / "run"
    over = tiny_overrides(cfg.data.root, cfg.data.cache) + [f"train.run={run}"]
    _one_line_error(_cli("pretrain", *over, setting), *needles)
    return cfg, run, over


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pretrain_refuses_a_foreign_checkpoint_with_the_clean_line(tiny_stage, tmp_path):
    cfg, _ = tiny_stage
    run = tmp_path / "run"
    run.mkdir()
    over = tiny_overrides(cfg.data.root, cfg.data.cache) + [f"train.run={run}"]
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"model": _Evil()}))
    _one_line_error(_cli("pretrain", *over, cwd=tmp_path), "motionclr pretrain: error:",
                    "is not a motionclr checkpoint")
    assert not (tmp_path / "pwned.txt").exists()
    torch.save({"model": {}, "epoch": 0}, run / "checkpoint.pt")   # loadable, but not ours
    line = _one_line_error(_cli("pretrain", *over), "is not a motionclr checkpoint")
    assert line != "motionclr pretrain: error: model"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]   # nothing written


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want == resolve_device("AUTO").type
    with pytest.raises(UserError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UserError, match="CUDA"):
        resolve_device(f"cuda:{n}")


@NO_CUDA
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(tiny_stage, tmp_path):
    cfg, run, over = _refused_before_writing(tiny_stage, tmp_path, "train.device=cuda",
                                             "no CUDA GPU", "device=auto")
    assert not run.exists()
    run.mkdir()
    from motionclr.train.methods import build_method
    torch.save({"model": build_method(cfg).state_dict(), "epoch": 0, "config": cfg.to_dict(),
                "motionclr_checkpoint": 1}, run / "checkpoint.pt")
    _one_line_error(_cli("eval", "retrieval", "--run", str(run), "--device", "cuda"),
                    "motionclr eval: error:", "no CUDA GPU")


def test_ctrl_c_prints_one_line_and_the_rerun_resumes(tiny_stage, tmp_path):
    cfg, _ = tiny_stage
    run = tmp_path / "run"
    over = tiny_overrides(cfg.data.root, cfg.data.cache) + [
        f"train.run={run}", "train.epochs=200", "train.num_workers=1"]
    # SIG_DFL in the child: Python then turns SIGINT into KeyboardInterrupt, as in a terminal
    # (a shell's background job would inherit SIGINT ignored).
    proc = subprocess.Popen([sys.executable, "-m", "motionclr", "pretrain", *over],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)        # the terminal sends it to the whole group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "motionclr pretrain: interrupted; rerun the same command to resume")
    assert "interrupted; rerun" in (run / "log.txt").read_text()
    done = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] + 1
    res = _cli("pretrain", *over[:-2], f"train.epochs={done + 1}", "train.num_workers=1")
    assert res.returncode == 0 and f"resuming {run} after epoch {done}/{done + 1}" in res.stdout


def test_viz_takes_a_cache_root_and_lists_the_closest_ids(tiny_stage, tmp_path):
    cfg, stage = tiny_stage
    cache = Path(cfg.data.cache)
    import json
    vid = json.loads((stage / "manifest.json").read_text())["videos"][0]["video_id"]
    out = tmp_path / "strip.png"
    res = _cli("viz", "--cache", str(cache), "--dataset", "synthetic", "--video", vid,
               "--out", str(out))
    assert res.returncode == 0 and out.is_file(), res.stderr[-2000:]
    wrong = vid[:-3]                                     # a typo'd id
    line = _one_line_error(_cli("viz", "--cache", str(stage), "--video", wrong,
                                "--out", str(out)), "motionclr viz: error:", "closest:")
    assert vid in line.split("closest: ")[1].split(", ")[:5]
    _one_line_error(_cli("viz", "--cache", str(tmp_path), "--dataset", "synthetic",
                         "--video", vid, "--out", str(out)), "no finished flow stage")


def test_bench_errors_go_through_the_cli_handler(tmp_path):
    line = _one_line_error(_cli("bench", "methods", "--render-only", "--workdir",
                                str(tmp_path / "none")))
    assert "motionclr bench methods: error:" in line and "results.json" in line, line


def _make_eval(*assignments, env=None):
    res = subprocess.run(["make", "-n", "-C", str(REPO), "eval-retrieval", *assignments],
                         capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stderr
    return next(ln for ln in res.stdout.splitlines() if "eval retrieval" in ln)


@pytest.mark.skipif(not any((Path(p) / "make").is_file()
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="make not installed")
def test_make_eval_passes_only_what_the_user_set():
    line = _make_eval("RUN=runs/x")
    assert "--run runs/x" in line
    assert not re.search(r"data\.root|data\.cache|--device", line), line
    line = _make_eval("RUN=runs/x", "DATA_ROOT=/d", "DEVICE=cuda")
    assert "data.root=/d" in line and "--device cuda" in line and "data.cache" not in line
    assert "data.cache=/c" in _make_eval("RUN=runs/x", env={"CACHE": "/c"})


def test_ctrl_c_that_surfaces_as_another_error_is_still_an_interrupt(monkeypatch, capsys):
    """A SIGINT inside torch.save makes its zip writer's cleanup raise a RuntimeError in
    place of the KeyboardInterrupt; the user pressed Ctrl-C, so it ends as one."""
    from motionclr import cli, interrupts

    def dispatch(argv):
        monkeypatch.setattr(interrupts, "_pending", True)  # what the SIGINT handler sets
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    monkeypatch.setattr(interrupts, "install", lambda: None)
    assert cli.main(["pretrain"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "motionclr pretrain: interrupted; rerun the same command to resume")
    monkeypatch.setattr(interrupts, "_pending", False)  # control: no Ctrl-C, a real bug

    def bug(argv):
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli, "_dispatch", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["pretrain"])


def test_data_direct_is_checked_at_once_and_on_trains_through_workers(tiny_stage, tmp_path):
    """A bad ``data.direct`` is one line naming the choices, before anything is written;
    ``on`` trains with O_DIRECT reads inside a DataLoader worker (its own thread pool)."""
    _, run, over = _refused_before_writing(tiny_stage, tmp_path, "data.direct=yes",
                                           "data.direct='yes'", "valid: auto, on, off")
    assert not run.exists()
    res = _cli("pretrain", *over, "data.direct=on", "train.num_workers=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "read with O_DIRECT (data.direct=on)" in res.stdout
    assert "read into the page cache" not in res.stdout  # no warming for direct reads
    assert (run / "checkpoint.pt").exists()


def test_shuffle_bn_groups_are_checked_at_once_and_a_run_trains_with_them(tiny_stage, tmp_path):
    """``method.shuffle_bn`` with too few clips per BN group fails before the run directory
    exists; a valid value trains, and a resume that changes it is refused with the diff."""
    _, run, over = _refused_before_writing(tiny_stage, tmp_path, "method.shuffle_bn=4",
                                           "method.shuffle_bn=4", "train.batch_size=4 < 8")
    assert not run.exists()
    res = _cli("pretrain", *over, "method.shuffle_bn=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run / "checkpoint.pt").exists()
    res = _cli("pretrain", *over, "method.shuffle_bn=1", "train.epochs=2")
    assert res.returncode != 0 and "refusing to resume" in res.stderr
    assert "method.shuffle_bn" in res.stderr  # the diff names the key
