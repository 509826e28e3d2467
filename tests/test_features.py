"""The shared feature extractor: views per video, per-clip L2, layer, cache key, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motionclr.config import config_from_dict
from motionclr.eval.features import cache_key, extract, pool_views, protocol
from motionclr.eval.views import DenseClips


def with_eval(cfg, **knobs):
    out = config_from_dict(cfg.to_dict())
    for k, v in knobs.items():
        setattr(out.eval, k, v)
    return out


@pytest.fixture(scope="module")
def model(tiny_stage):
    from motionclr.train.methods import build_method
    torch.manual_seed(0)
    return build_method(tiny_stage[0])


@pytest.fixture(scope="module")
def subset_videos(tiny_stage):
    from motionclr.datasets.shard_dataset import select_videos
    from motionclr.storage.shards import load_manifest
    cfg, stage = tiny_stage
    return select_videos(load_manifest(stage), "test", cfg.data.split)


@pytest.mark.parametrize("knobs", [{"num_clips": 2, "crops": 1}, {"num_clips": 2, "crops": 3},
                                   {"dense": True, "crops": 1}, {"dense": True, "crops": 3}])
def test_views_per_video_and_every_video_once(tiny_stage, model, subset_videos, knobs):
    cfg, stage = tiny_stage
    c = cfg.clip
    out = extract(model, stage, "test", with_eval(cfg, **knobs), progress=False)
    clips = [len(DenseClips(c.clip_len, c.stride)(v["n_frames"])) if knobs.get("dense")
             else knobs["num_clips"] for v in subset_videos]
    assert out["n_views"].tolist() == [n * knobs["crops"] for n in clips]
    if knobs.get("dense"):  # 12-frame videos, 4-frame windows at step 1: 9 windows each
        assert set(clips) == {9}
    # Every video once, in the subset's order, with its own label.
    assert out["video_ids"].tolist() == [v["video_id"] for v in subset_videos]
    assert out["labels"].tolist() == [v["label"] for v in subset_videos]
    assert out["feats"].shape == (len(subset_videos), model.backbone.out_dim)


def test_per_clip_l2_hand_made():
    f = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, -5.0]])
    # Video 0 has views 0-1, video 1 view 2.
    assert pool_views(f, [2, 1]).tolist() == [[1.5, 3.0], [0.0, -5.0]]
    assert torch.allclose(pool_views(f, [2, 1], clip_l2=True),
                          torch.tensor([[0.3, 0.9], [0.0, -1.0]]))


def test_per_clip_l2_on_extracted_features(tiny_stage, model):
    cfg, stage = tiny_stage
    one = extract(model, stage, "test", with_eval(cfg, num_clips=1, clip_l2=True),
                  progress=False)
    assert np.allclose(np.linalg.norm(one["feats"], axis=1), 1.0, atol=1e-5)
    raw = extract(model, stage, "test", with_eval(cfg, num_clips=1), progress=False)
    unit = raw["feats"] / np.linalg.norm(raw["feats"], axis=1, keepdims=True)
    assert np.allclose(one["feats"], unit, atol=1e-5)
    two = extract(model, stage, "test", with_eval(cfg, num_clips=2, clip_l2=True),
                  progress=False)
    assert (np.linalg.norm(two["feats"], axis=1) <= 1 + 1e-5).all()


def test_projector_layer(tiny_stage, model):
    cfg, stage = tiny_stage
    pool = extract(model, stage, "test", with_eval(cfg, num_clips=1), progress=False)
    proj = extract(model, stage, "test", with_eval(cfg, num_clips=1, layer="projector"),
                   progress=False)
    assert proj["feats"].shape == (len(pool["feats"]), cfg.model.dim)
    with torch.no_grad():  # one view: the projector's output of the pooled feature
        expect = model.projector(torch.from_numpy(pool["feats"])).numpy()
    assert np.allclose(proj["feats"], expect, atol=1e-5)


def test_no_randomness_at_test_time(tiny_stage, model):
    cfg, stage = tiny_stage
    c = with_eval(cfg, dense=True, crops=3, clip_l2=True)
    torch.manual_seed(1)
    a = extract(model, stage, "train", c, progress=False)
    torch.manual_seed(2)
    b = extract(model, stage, "train", c, progress=False)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    # The 3 crops are different views: their mean is not the centre crop's feature.
    centre = extract(model, stage, "train", with_eval(cfg, dense=True, clip_l2=True),
                     progress=False)
    assert not np.allclose(a["feats"], centre["feats"])


def test_cache_key_and_protocol_record_every_option(tiny_stage):
    cfg, stage = tiny_stage
    meta = {"checkpoint_mtime": 1.0, "epoch": 3}
    base = cache_key(stage, "test", cfg, meta)
    assert cache_key(stage, "test", with_eval(cfg), meta) == base
    p = protocol(cfg)
    assert (p["num_clips"], p["crops"], p["clip_l2"], p["layer"]) == (2, 1, False,
                                                                      "backbone_pool")
    changes = {"num_clips": 3, "crops": 3, "dense": True, "clip_l2": True, "layer": "projector"}
    keys = {base}
    for k, v in changes.items():
        keys.add(cache_key(stage, "test", with_eval(cfg, **{k: v}), meta))
    assert len(keys) == 1 + len(changes)
    d = protocol(with_eval(cfg, dense=True))
    assert d["num_clips"] == "dense" and d["dense_step"] == 1


@pytest.mark.parametrize("override,match", [("eval.crops=2", r"valid: \[1, 3\]"),
                                            ("eval.layer=conv5", "valid:.*projector"),
                                            ("eval.num_clips=0", "valid")])
def test_bad_values_fail_with_the_choices(override, match):
    from motionclr.config import load_config
    with pytest.raises(ValueError, match=match):
        protocol(load_config(None, [override]))


def test_coclr_preset_uses_dense_per_clip_l2():
    from motionclr.eval.retrieval_protocols import protocol_overrides, retrieval_protocol
    p = retrieval_protocol("coclr")
    assert p["dense"] and p["clip_l2"] and p["center"] and p["crops"] == 1
    assert not any("dense" in d or "per-clip" in d for d in p["differs_from_original"])
    assert {"eval.dense=true", "eval.clip_l2=true"} <= set(protocol_overrides("coclr"))
