"""Resuming a run: a config that would change what was trained is refused with the diff
before anything is written; allowed changes (more epochs, workers, logging) resume and
are recorded. Real tiny pretraining runs on the tiny flow stage."""
import json
import shutil

import pytest
import torch

from motionclr.config import load_config
from motionclr.errors import UserError
from motionclr.pretrain import pretrain
from motionclr.train.resume import check_resume, config_diff
from tests.conftest import tiny_overrides


def _snapshot(run):
    """Every file under ``run`` with its bytes: 'nothing was written' is checked on this."""
    return {p.relative_to(run).as_posix(): p.read_bytes()
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tiny_stage, tmp_path_factory, one_torch_thread):
    """A finished 1-epoch run; tests copy it before touching it."""
    cfg, stage = tiny_stage
    run = tmp_path_factory.mktemp("trained") / "run"
    over = tiny_overrides(cfg.data.root, cfg.data.cache) + [f"train.run={run}"]
    pretrain(load_config(None, over), progress=False)
    return run, over, stage


@pytest.fixture
def run_copy(trained, tmp_path):
    run, over, stage = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, [o for o in over if not o.startswith("train.run=")] + [f"train.run={copy}"]


def test_changed_model_width_is_refused_before_anything_is_written(run_copy):
    run, over = run_copy
    before = _snapshot(run)
    with pytest.raises(UserError) as e:
        pretrain(load_config(None, over + ["model.width=8", "train.lr=0.1"]), progress=False)
    msg = str(e.value)
    assert "refusing to resume" in msg and "nothing was written" in msg
    assert "model.width: 4 -> 8" in msg and "train.lr: 0.05 -> 0.1" in msg
    assert "train.epochs" in msg.splitlines()[-1]          # says which keys may change
    assert _snapshot(run) == before                         # config.yaml, log, tb untouched
    # The intact checkpoint still evaluates with its own config.
    from motionclr.eval.retrieval import run_retrieval
    assert run_retrieval(run, device="cpu", progress=False)["epochs"] == 1


@pytest.mark.parametrize("change", ["train.warmup_epochs=1", "train.seed=1",
                                   "method.temperature=0.2", "clip.stride=2",
                                   "data.flip=shared", "train.batch_size=8"])
def test_keys_that_change_the_run_are_refused(run_copy, change):
    run, over = run_copy
    before = _snapshot(run)
    with pytest.raises(UserError, match=f"{change.split('=')[0]}: "):
        pretrain(load_config(None, over + ["train.epochs=2", change]), progress=False)
    assert _snapshot(run) == before


def test_more_epochs_and_operational_keys_resume_and_are_recorded(run_copy, capsys):
    run, over = run_copy
    lines_before = (run / "provenance.jsonl").read_text().splitlines()
    pretrain(load_config(None, over + ["train.epochs=2", "train.log_every=1",
                                       "eval.num_clips=3", "data.direct=on"]))
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 1/2" in out and "starting new run" not in out
    assert "train.epochs 1 -> 2" in out
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["config"]["train"]["epochs"] == 2
    assert ckpt["schedules"] == [{"from_epoch": 0, "epochs": 1}, {"from_epoch": 1, "epochs": 2}]
    prov = (run / "provenance.jsonl").read_text().splitlines()
    assert prov[:len(lines_before)] == lines_before and len(prov) == len(lines_before) + 1
    resume = json.loads(prov[-1])["resume"]
    assert resume["from_epoch"] == 1
    changed = {k: v for k, v in resume["changed"].items() if k != "train.run"}  # a copy
    assert changed == {"train.epochs": [1, 2], "train.log_every": [10, 1],
                       "eval.num_clips": [2, 3], "data.direct": ["auto", "on"]}
    assert "read with O_DIRECT (data.direct=on)" in out
    assert load_config(run / "config.yaml").train.epochs == 2
    # Fewer epochs than the checkpoint finished: refused, nothing written.
    before = _snapshot(run)
    with pytest.raises(UserError, match="finished 2 epochs"):
        pretrain(load_config(None, over + ["train.epochs=1"]), progress=False)
    assert _snapshot(run) == before


def test_a_moved_cache_resumes_on_the_same_stage(run_copy, trained, tmp_path, capsys):
    run, over = run_copy
    _, _, stage = trained
    moved = tmp_path / "moved" / "synthetic" / stage.name
    shutil.copytree(stage, moved)
    over = [o for o in over if not o.startswith("data.cache=")]
    pretrain(load_config(None, over + [f"data.cache={tmp_path / 'moved'}", "train.epochs=2"]))
    assert "data.cache" in capsys.readouterr().out
    assert torch.load(run / "checkpoint.pt", weights_only=True)["stage"] == str(moved)


def test_another_flow_stage_is_refused(trained):
    """Same config keys, other data (the root now lists other videos): not this run."""
    run, over, stage = trained
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    cfg = load_config(None, over)
    assert check_resume(ckpt, cfg, stage, run)["changed"] == {}
    other = stage.with_name("flow-000000000000")
    with pytest.raises(UserError, match=f"flow stage: {stage.name} -> flow-000000000000"):
        check_resume(ckpt, cfg, other, run)


def test_config_diff_flattens_dict_fields():
    a = {"method": {"terms": {"loss_mx": 0.5}, "name": "mscl"}}
    b = {"method": {"terms": {"loss_mx": 0.5, "loss_mx_r": 0}, "name": "mscl"}}
    (key, old, new), = config_diff(a, b)
    assert key == "method.terms.loss_mx_r" and new == 0 and old is not None
