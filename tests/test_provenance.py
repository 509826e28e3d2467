"""Provenance and logs in every run and stage directory; eval metrics and hparams in
TensorBoard; epochs counted one way (from 1) in the bar, the summary, the CSV and the JSON.
The CLI end to end on the tiny dataset, in a fresh cache."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

REPO = Path(__file__).resolve().parent.parent


def _cli(*args, cwd=None):
    res = subprocess.run([sys.executable, "-m", "motionclr", *args], capture_output=True,
                         text=True, timeout=600, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def pipeline(tiny_root, tmp_path_factory):
    """flow (fresh cache) -> index -> pretrain 2 epochs -> eval retrieval, via the CLI."""
    tmp = tmp_path_factory.mktemp("prov")
    run = tmp / "run"
    over = tiny_overrides(tiny_root, tmp / "cache") + [f"train.run={run}", "train.epochs=2",
                                                      "train.knn_every=1"]
    outs = {"flow": _cli("flow", *over, cwd=tmp), "index": _cli("index", *over, cwd=tmp),
            "pretrain": _cli("pretrain", *over, cwd=tmp),
            "eval": _cli("eval", "retrieval", "--run", str(run), cwd=tmp)}
    stage = next((tmp / "cache" / "synthetic").glob("flow-*"))
    return run, stage, over, outs


def _records(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def _check_record(rec, kind, command_words):
    import torch

    import motionclr
    assert rec["kind"] == kind and rec["motionclr"] == motionclr.__version__
    assert rec["command"].startswith("motionclr ") and all(w in rec["command"]
                                                           for w in command_words)
    assert rec["host"] and rec["python"] and rec["cwd"] and rec["time"]
    assert rec["libraries"]["numpy"] and rec["libraries"]["h5py"]
    if kind != "flow":
        assert rec["libraries"]["torch"] == torch.__version__.split("+")[0]
    if (REPO / ".git").exists():     # a git checkout: the commit it ran from
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        assert rec["git"]["commit"] == head and isinstance(rec["git"]["dirty"], bool)


def test_every_directory_records_its_provenance_and_log(pipeline):
    run, stage, over, outs = pipeline
    flow, = _records(stage / "provenance.jsonl")
    _check_record(flow, "flow", ["motionclr flow", "decode.short_side=32"])
    assert "flow: 16 videos" in (stage / "log.txt").read_text()
    index = next(stage.glob("index-*.h5"))
    rec, = _records(index.with_name(f"{index.stem}.provenance.jsonl"))
    _check_record(rec, "index", ["motionclr index"])
    assert "index: 16 videos" in index.with_name(f"{index.stem}.log.txt").read_text()
    pre, ev = _records(run / "provenance.jsonl")
    _check_record(pre, "pretrain", ["motionclr pretrain", f"train.run={run}"])
    _check_record(ev, "eval", ["motionclr eval retrieval --run"])
    assert pre["resume"] == {"from_epoch": 0, "changed": {}}
    log = (run / "log.txt").read_text()
    # What was printed, in order, progress-bar redraws reduced to their last state.
    for out in (outs["pretrain"], outs["eval"]):
        for line in out.stdout.splitlines():
            assert line in log, line
    assert log.index("starting new run") < log.index("epoch 2/2") < log.index("R@1")
    assert "\r" not in log
    # A stage's log holds its own output only (not the later pretraining).
    assert "epoch 1/2" not in (stage / "log.txt").read_text()


def test_epochs_are_counted_from_1_everywhere(pipeline):
    run, _, _, outs = pipeline
    out = outs["pretrain"]
    assert "pretrain: starting new run" in out.stdout and "resuming" not in out.stdout
    assert "of shards read into the page cache in" in out.stdout  # data.warm (small stage)
    assert "epoch 1/2 " in out.stdout and "epoch 2/2 " in out.stdout      # the summary
    assert "epoch 1/2:" in out.stderr and "epoch 2/2:" in out.stderr      # the bar
    with open(run / "log.csv") as f:
        assert sorted({r["epoch"] for r in csv.DictReader(f)}) == ["1", "2"]
    assert [r.split(",")[0] for r in (run / "knn.csv").read_text().splitlines()[1:]] == [
        "1", "2"]
    assert json.loads((run / "retrieval.json").read_text())["epochs"] == 2
    from motionclr.eval.report import build_report
    assert "2 pretraining epochs" in build_report(run)


def test_eval_metrics_and_hparams_reach_tensorboard(pipeline):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run, _, _, _ = pipeline
    result = json.loads((run / "retrieval.json").read_text())
    ev = EventAccumulator(str(run / "tb"))
    ev.Reload()
    last_train_step = max(e.step for e in ev.Scalars("train/loss"))
    for k, v in result["recall"].items():
        (e,) = ev.Scalars(f"eval/retrieval/R@{k}")
        assert e.step == last_train_step and abs(e.value - v) < 1e-6
    hp = EventAccumulator(str(run / "tb" / "hparams-retrieval"))
    hp.Reload()
    from tensorboard.plugins.hparams import plugin_data_pb2
    content = hp.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.backbone"].string_value == "small3d"
    assert start.hparams["train.lr"].number_value == pytest.approx(0.05)
    assert start.hparams["epochs_trained"].number_value == 2
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {m.name.tag for m in exp.experiment.metric_infos} == {
        f"eval/retrieval/R@{k}" for k in result["recall"]}


def test_logs_follow_runs_and_stages(tmp_path):
    """In one process: a run's log takes what the stage built inside it printed; a stage's
    log ends with its scope; a second run's output goes to the second run only."""
    from motionclr import provenance

    def body(p):
        return [ln for ln in p.read_text().splitlines() if not ln.startswith("=== ")]
    provenance.start_capture(["pretrain", "x=1"])
    try:
        provenance.record(tmp_path / "run1", "pretrain")
        print("a")
        with provenance.scope():
            provenance.record(tmp_path / "stage" / "index-1.h5", "index")
            print("bar 10%\rbar 100%")            # a redrawn line: its last state
        print("d")
        provenance.record(tmp_path / "run2", "pretrain")
        print("e", file=sys.stderr)
    finally:
        provenance.stop_capture()
    print("after")                                 # capture over: nowhere
    assert body(tmp_path / "run1" / "log.txt") == ["a", "bar 100%", "d"]
    assert body(tmp_path / "stage" / "index-1.log.txt") == ["bar 100%"]
    assert body(tmp_path / "run2" / "log.txt") == ["e"]
    rec, = _records(tmp_path / "stage" / "index-1.provenance.jsonl")
    assert rec["command"] == "motionclr pretrain x=1" and rec["kind"] == "index"
