"""Evaluation reads the checkpoint's own config and the flow stage it trained on, so
defaults passed by a Makefile, a later config.yaml or a grown dataset cannot redirect it."""
import shutil

import pytest

from motionclr.config import load_config, save_config
from motionclr.eval.checkpoint import load_run
from motionclr.pretrain import pretrain
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def trained(tiny_stage, tmp_path_factory, one_torch_thread):
    """A 1-epoch run on a private copy of the dataset root (the tests change the copy)."""
    cfg, stage = tiny_stage
    tmp = tmp_path_factory.mktemp("evalcfg")
    root = tmp / "root"
    shutil.copytree(cfg.data.root, root)
    over = tiny_overrides(root, cfg.data.cache) + [f"train.run={tmp / 'run'}"]
    pretrain(load_config(None, over), progress=False)
    return tmp / "run", root, stage, over


def test_eval_uses_the_checkpoint_config_not_a_later_config_yaml(trained, tmp_path):
    run, _, _, over = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # config.yaml describing another model (what a refused or later attempt could leave).
    save_config(load_config(None, over + ["model.width=8"]), copy / "config.yaml")
    cfg, model, meta = load_run(copy, device="cpu")
    assert cfg.model.width == 4 and meta["epochs"] == 1 and meta["epoch"] == 0


def test_eval_uses_the_stage_it_trained_on_after_the_dataset_grew(trained, tmp_path):
    run, root, stage, over = trained
    from motionclr.eval.retrieval import run_retrieval
    from motionclr.pipeline.stages import find_flow_stage
    grown = tmp_path / "grown"   # the same dataset root, one more training video listed
    shutil.copytree(root, grown)
    src = next((grown / "MoveLeft").glob("*.avi"))
    shutil.copy(src, src.with_name("v_MoveLeft_g09_c01.avi"))
    with open(grown / "ucfTrainTestlist" / "trainlist01.txt", "a") as f:
        f.write("MoveLeft/v_MoveLeft_g09_c01.avi 2\n")
    shutil.rmtree(root)
    grown.rename(root)
    with pytest.raises(FileNotFoundError, match="not finished"):
        find_flow_stage(load_config(None, over))      # the config now means other data
    res = run_retrieval(run, device="cpu", progress=False)
    assert res["stage"] == str(stage) and res["protocol"]["n_gallery"] == 8
    # Asking for other data explicitly looks that data's stage up (and says it is missing).
    with pytest.raises(FileNotFoundError, match="not finished"):
        load_run(run, [f"data.root={root}"], device="cpu")


def test_a_missing_stage_is_named(trained, tmp_path):
    run, _, stage, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    import torch
    ckpt = torch.load(copy / "checkpoint.pt", weights_only=True)
    ckpt["stage"] = str(tmp_path / "gone" / stage.name)
    ckpt["config"]["data"]["cache"] = str(tmp_path / "gone")
    torch.save(ckpt, copy / "checkpoint.pt")
    with pytest.raises(FileNotFoundError, match=f"trained on is not there .*{stage.name}"):
        load_run(copy, device="cpu")
    # The cache copied elsewhere is found under the same stage name.
    cfg, _, meta = load_run(copy, [f"data.cache={stage.parent.parent}"], device="cpu")
    assert meta["stage"].name == stage.name
