"""A retrieval k or kNN k at least the gallery size is warned about (issue #14, item 9)."""
import pytest
import torch


@pytest.fixture(scope="module")
def fake_run(tiny_stage, tmp_path_factory):
    """An untrained small3d MoCo checkpoint saved like ``pretrain`` saves one (8 + 8 videos)."""
    from motionclr.config import save_config
    from motionclr.train.methods import build_method
    cfg, stage = tiny_stage
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    save_config(cfg, run / "config.yaml")
    torch.save({"model": build_method(cfg).state_dict(), "epoch": 0, "config": cfg.to_dict(),
                "stage": str(stage), "motionclr_checkpoint": 1}, run / "checkpoint.pt")
    return run


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_retrieval_and_knn_k_at_least_the_gallery_warn(fake_run, capfd, one_torch_thread):
    from motionclr.eval.knn import run_knn
    from motionclr.eval.retrieval import run_retrieval
    res = run_retrieval(fake_run, ["eval.ks=[1, 5, 8, 20]"], progress=False)
    assert res["protocol"]["n_gallery"] == 8
    lines = _warnings(capfd.readouterr().err)
    assert [w.split(" >=")[0] for w in lines] == ["warning: retrieval k=8",
                                                   "warning: retrieval k=20"]
    assert all("gallery size 8" in w for w in lines)
    run_retrieval(fake_run, ["eval.ks=[1, 5, 7]"], progress=False)
    assert _warnings(capfd.readouterr().err) == []
    run_knn(fake_run, knobs={"ks": [3, 8]}, progress=False)
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("warning: kNN k=8 >= gallery size 8")
