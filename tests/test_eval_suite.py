"""Evaluation suite: linear probe, kNN, multi-view finetune testing, report, retrieval figure."""
import json

import numpy as np
import pytest
import torch

from motionclr.eval import linear
from motionclr.eval.finetune import PRESETS, sampler_for
from motionclr.eval.views import DenseClips, view_boxes
from motionclr.eval.knn import knn_accuracy, knn_predict

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: thread hand-offs cost more than they save on a shared 2-core CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


FAST = {"epochs": 30, "bn_wds": [1e-4, 1e-2], "logreg_l2": [1e-4, 1e-2], "svm_c": [0.1, 1.0],
        "max_iter": 50, "classifiers": ["bn_linear", "logreg", "svm"]}


def _blobs(n_per_class, classes=4, dim=16, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per_class)
    return {"feats": centres[y] + spread * rng.normal(size=(len(y), dim)), "labels": y}


def test_linear_probe_separable_features_reach_100():
    res = linear.probe(_blobs(20), _blobs(10, seed=1), 4, FAST)
    for kind, r in res.items():
        assert r["top1"] == 1.0 and r["top5"] == 1.0, kind
        assert r["confusion"].trace() == 40 and r["confusion"].sum() == 40
        assert set(r["val_top1"]) and all(0 <= v <= 1 for v in r["val_top1"].values())


def test_linear_probe_random_labels_is_at_chance():
    rng = np.random.default_rng(0)
    # 64-d, 200 videos: a probe fitted on the test set itself would score far above chance.
    train = {"feats": rng.normal(size=(200, 64)), "labels": rng.integers(0, 4, 200)}
    test = {"feats": rng.normal(size=(200, 64)), "labels": rng.integers(0, 4, 200)}
    for kind, r in linear.probe(train, test, 4, FAST).items():
        assert 0.12 < r["top1"] < 0.38, (kind, r["top1"])  # chance = 0.25


def test_stratified_holdout_is_deterministic_disjoint_and_per_class():
    y = np.repeat(np.arange(3), [10, 5, 1])
    fit, val = linear.stratified_holdout(y, 0.2, seed=3)
    fit2, val2 = linear.stratified_holdout(y, 0.2, seed=3)
    assert (fit == fit2).all() and (val == val2).all()
    assert not set(fit) & set(val) and len(fit) + len(val) == len(y)
    assert np.bincount(y[val], minlength=3).tolist() == [2, 1, 0]  # a 1-video class stays


def test_grouped_holdout_keeps_each_source_group_on_one_side():
    # class 0: groups 8-12 x 3 clips; class 1: groups 8-9 x 2 clips; class 2: one group
    y = np.repeat([0, 1, 2], [15, 4, 3])
    g = np.concatenate([np.repeat(np.arange(8, 13), 3), np.repeat([8, 9], 2), [8, 8, 8]])
    fit, val = linear.stratified_holdout(y, 0.2, seed=0, groups=g)
    assert not set(fit) & set(val) and len(fit) + len(val) == len(y)
    for c in (0, 1):
        held = set(g[val][y[val] == c])
        assert len(held) == 1 and not held & set(g[fit][y[fit] == c])  # whole groups
    assert np.bincount(y[val], minlength=3).tolist() == [3, 2, 1]  # one-group class: videos
    # the same number in another class is another source video: it may be kept to fit
    assert linear.train_groups({"video_ids": ["A/v_A_g08_c01", "B/v_B_g09_c02"]}).tolist() \
        == [8, 9]
    assert linear.train_groups({"video_ids": ["A/v_A_g08_c01", "clip7"]}) is None
    assert linear.train_groups({}) is None


def test_hyperparameter_selection_sees_only_train(monkeypatch):
    train, test = _blobs(20), _blobs(10, seed=1)
    seen = []
    real = linear.select_hparams

    def spy(kind, x, y, c, k, groups=None):
        seen.append((x.clone(), y.clone()))
        return real(kind, x, y, c, k, groups)
    monkeypatch.setattr(linear, "select_hparams", spy)
    knobs = {**FAST, "classifiers": ["logreg"]}
    first = linear.probe(train, test, 4, knobs)["logreg"]
    tr = torch.nn.functional.normalize(torch.as_tensor(train["feats"]).float(), dim=1)
    assert len(seen) == 1 and torch.equal(seen[0][0], tr)
    assert (seen[0][1].numpy() == train["labels"]).all()
    # A completely different test set changes nothing about what was selected.
    other = {"feats": -test["feats"][::-1], "labels": np.zeros(40, dtype=int)}
    second = linear.probe(train, other, 4, knobs)["logreg"]
    assert first["hparams"] == second["hparams"] and first["val_top1"] == second["val_top1"]


def test_selection_scores_only_held_out_train_rows(monkeypatch):
    train = _blobs(20)
    real_fit, fitted, log = linear.fit, [], []

    def spy(kind, x, y, c, hp, k):
        rows = {tuple(r) for r in x.tolist()}
        fitted.append(rows)
        scorer = real_fit(kind, x, y, c, hp, k)

        def score(z):
            log.append((rows, {tuple(r) for r in z.tolist()}))
            return scorer(z)
        return score
    monkeypatch.setattr(linear, "fit", spy)
    x = torch.nn.functional.normalize(torch.as_tensor(train["feats"]).float(), dim=1)
    linear.select_hparams("logreg", x, torch.as_tensor(train["labels"]), 4, {**linear.DEFAULTS,
                          **FAST})
    assert len(log) == len(FAST["logreg_l2"])
    every = {tuple(r) for r in x.tolist()}
    for rows, scored in log:                      # validation rows: held out, from train
        assert not rows & scored and rows | scored == every and len(scored) == 16


def test_multiview_scores_average_every_view():
    from motionclr.eval.finetune import video_scores

    class Probe(torch.nn.Module):                  # logits [mean of channel 0, 0]
        def forward(self, x):
            self.seen = getattr(self, "seen", 0) + len(x)
            return torch.stack([x[:, 0].mean(dim=(1, 2, 3)), torch.zeros(len(x))], 1)
    rgb = torch.stack([torch.full((3, 2, 24, 32), 50 * v, dtype=torch.uint8)
                       for v in range(4)])         # 4 clips, each one constant colour
    a = (torch.arange(4) * 50 / 255 - 0.485) / 0.229  # the normalised value of each clip
    net = Probe()
    out = video_scores(net, rgb, crops=3, size=8, aggregate="logits")
    assert net.seen == 12 and torch.allclose(out, torch.stack([a.mean(), torch.tensor(0.)]),
                                             atol=1e-5)
    soft = torch.stack([a, torch.zeros(4)], 1).softmax(1).mean(0)
    assert torch.allclose(video_scores(net, rgb, 10, 8, "softmax"), soft, atol=1e-5)


def test_knobs_take_their_default_types_and_unknown_ones_fail():
    from motionclr.eval.finetune import finetune_knobs
    from motionclr.eval.retrieval_protocols import resolve_knobs
    k = resolve_knobs(None, "linear", linear.DEFAULTS,
                      {"bn_wds": ["1e-3", 1], "epochs": 5.0, "l2_normalize": "false"})
    assert k["bn_wds"] == [0.001, 1.0] and k["epochs"] == 5 and k["l2_normalize"] is False
    with pytest.raises(ValueError, match="expected int"):
        resolve_knobs(None, "linear", linear.DEFAULTS, {"epochs": 2.5})
    with pytest.raises(KeyError, match="valid"):
        resolve_knobs(None, "linear", linear.DEFAULTS, {"epoch": 3})
    ft = finetune_knobs(None, {"recipe": "coclr", "epochs": 3})
    assert ft["optimizer"] == "adam" and ft["backbone_lr_mult"] == 0.1 and ft["epochs"] == 3
    with pytest.raises(ValueError, match="valid"):
        finetune_knobs(None, {"views": ["10x1", "12x5"]})


def test_knn_known_answer_and_temperature():
    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    labels = np.array([0, 1, 1])
    q = np.array([[2.0, 0.0]])                   # cosine 1.0, 0.8, 0.6 to the train items
    assert knn_predict(train, labels, q, k=1).tolist() == [0]
    # k=3, T=1: class 0 gets e^1 = 2.72 < class 1's e^0.8 + e^0.6 = 4.05.
    assert knn_predict(train, labels, q, k=3, T=1.0).tolist() == [1]
    # T=0.07 sharpens the vote towards the nearest neighbour.
    assert knn_predict(train, labels, q, k=3, T=0.07).tolist() == [0]
    assert knn_accuracy(train, labels, np.vstack([q, q]), np.array([1, 0]), k=3, T=1.0) == 0.5


def test_figure_neighbours_match_retrieval_recall():
    from motionclr.eval.retrieval import recall_at_k
    from motionclr.eval.retrieval_protocols import neighbours, protocol_overrides
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(30, 8)), rng.normal(size=(50, 8)) + 0.5
    ql, gl = rng.integers(0, 3, 30), rng.integers(0, 3, 50)
    for center in (False, True):
        idx, sim = neighbours(q, g, k=5, center=center)
        assert idx.shape == (30, 5) and (np.diff(sim, axis=1) <= 1e-12).all()
        hit5 = (gl[idx] == ql[:, None]).any(1).mean()
        assert hit5 == recall_at_k(q, ql, g, gl, ks=(5,), center=center)[5]
    assert protocol_overrides("vcop") == ["eval.num_clips=10", "eval.center=false"]


def test_multiview_boxes_and_clip_counts():
    assert len(sampler_for("10x1", 16, 2)(100)) == 10 and PRESETS["10x1"][1] == 1
    assert len(sampler_for("10x3", 16, 2)(100)) * PRESETS["10x3"][1] == 30
    b, f = view_boxes(128, 171, 1)
    assert b.tolist() == [[21, 0, 128, 128]] and not f.any()
    b, f = view_boxes(128, 171, 3)                # landscape: left / centre / right
    assert b.tolist() == [[0, 0, 128, 128], [21, 0, 128, 128], [43, 0, 128, 128]]
    b, _ = view_boxes(171, 128, 3)                # portrait: top / centre / bottom
    assert [r[1] for r in b.tolist()] == [0, 21, 43] and all(r[0] == 0 for r in b.tolist())
    b, f = view_boxes(256, 256, 10)               # CoCLR: 224 corners + centre, x2 flips
    assert len(b) == 10 and f.sum() == 5 and b[4].tolist() == [16, 16, 224, 224]
    starts = [int(c[0]) for c in DenseClips(32, 1)(100)]
    assert starts == [0, 15, 30, 45, 60]          # CoCLR's stride 15 for 32-frame windows
    with pytest.raises(ValueError, match="valid"):
        sampler_for("7x2", 16, 1)


@pytest.fixture(scope="module")
def fake_run(tiny_stage, tmp_path_factory):
    """An untrained small3d (width 4) MoCo checkpoint saved like ``pretrain`` saves one."""
    from motionclr.config import save_config
    from motionclr.train.methods import build_method
    cfg, stage = tiny_stage
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_method(cfg)
    save_config(cfg, run / "config.yaml")
    torch.save({"model": model.state_dict(), "epoch": 0, "config": cfg.to_dict(),
                "stage": str(stage), "motionclr_checkpoint": 1}, run / "checkpoint.pt")
    return run


def test_finetune_one_epoch_end_to_end(fake_run):
    from motionclr.eval.finetune import run_finetune
    knobs = {"epochs": 1, "batch_size": 4, "views": ["10x1", "10x3"], "aggregate": "logits"}
    res = run_finetune(fake_run, device="cpu", knobs=knobs, progress=False)
    saved = json.loads((fake_run / "finetune.json").read_text())
    assert saved["results"] == res["results"] and set(res["results"]) == {"10x1", "10x3"}
    for preset, r in res["results"].items():
        assert r["n_test"] == 8 and 0 <= r["top1"] <= r["top5"] <= 1
        assert r["mean_clips_per_video"] == 10
    assert res["results"]["10x3"]["crops"] == 3
    p = saved["protocol"]
    assert p["recipe"] == "mcl" and p["epochs"] == 1 and p["aggregate"] == "logits"
    assert p["flip"] == "off"                      # synthetic classes are directions
    assert len(saved["history"]) == 1 and (fake_run / "finetune" / "checkpoint.pt").is_file()
    # Same knobs: resumes from the finished checkpoint, and the test views are deterministic.
    again = run_finetune(fake_run, device="cpu", knobs=knobs, progress=False)
    assert again["history"] == res["history"] and again["results"] == res["results"]


def test_linear_and_figure_on_a_run(fake_run):
    from PIL import Image

    from motionclr.eval.retrieval_protocols import retrieval_figure
    res = linear.run_linear(fake_run, knobs={**FAST, "classifiers": ["logreg"]},
                            progress=False)
    saved = json.loads((fake_run / "linear.json").read_text())
    assert saved["protocol"]["n_test"] == 8 and saved["protocol"]["holdout"] == 0.2
    assert "never 'test'" in saved["protocol"]["selection"]
    assert (fake_run / res["classifiers"]["logreg"]["confusion_png"]).is_file()
    png = retrieval_figure(fake_run, n_queries=3, k=5)
    assert png == fake_run / "retrieval_examples.png"
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] > 100     # 3 rows x 6 columns of frames


def test_report_table_from_fake_jsons(tmp_path):
    from motionclr.eval.report import build_report
    (tmp_path / "retrieval.json").write_text(json.dumps(
        {"recall": {"1": 0.25, "10": 0.5}, "protocol": {"num_clips": 10, "center": True},
         "dataset": "ucf101", "method": "moco", "backbone": "r3d_18", "epoch": 9}))
    (tmp_path / "linear.json").write_text(json.dumps({"classifiers": {"logreg": {
        "top1": 0.5, "top5": 0.875, "hparams": {"l2": 0.001}}}}))
    (tmp_path / "finetune.json").write_text(json.dumps({"results": {"10x3": {
        "top1": 0.75, "top5": 1.0, "clips": 10, "crops": 3}},
        "protocol": {"aggregate": "softmax", "recipe": "mcl", "epochs": 3}}))
    (tmp_path / "linear_confusion_logreg.png").write_bytes(b"")
    text = build_report(tmp_path)
    assert (tmp_path / "report.md").read_text() == text
    assert "| retrieval | 10 clips, center=True" in text and "| R@10 | 50.0 |" in text
    assert "| linear (logreg) | l2=0.001 | top5 | 87.5 |" in text
    assert "| finetune | 10x3 (10 clips x 3 crops), softmax-mean" in text
    assert "`knn.json`" in text and "linear_confusion_logreg.png" in text
    assert text.index("R@1 ") < text.index("R@10")
