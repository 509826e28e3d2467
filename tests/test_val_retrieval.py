"""Validation retrieval inside the train split by held-out groups (eval/val_retrieval.py)."""
import numpy as np
import pytest

from motionclr.datasets.sources.ucf101 import group_number
from motionclr.eval.retrieval_protocols import neighbours
from motionclr.eval.val_retrieval import group_folds, held_out_group_recall


def test_group_number_and_folds():
    assert group_number("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01") == 8
    assert group_number("v_MoveUp_g3_c2") == 3
    assert group_number("clips/video_7") is None
    folds, unit = group_folds(["A/v_A_g08_c01", "B/v_B_g09_c03"])
    assert folds.tolist() == [8, 9] and unit == "group"
    # ids without groups (one is enough): videos dealt into 4 folds per class, seeded
    ids = [f"c{c}/clip{i}" for c in range(2) for i in range(9)] + ["A/v_A_g08_c01"]
    labels = [c for c in range(2) for _ in range(9)] + [0]
    folds, unit = group_folds(ids, labels)
    assert unit == "video" and folds.tolist() == group_folds(ids, labels)[0].tolist()
    for c in (0, 1):  # balanced: 9 or 10 videos of a class over 4 folds
        counts = np.bincount(folds[np.asarray(labels) == c], minlength=4)
        assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="need labels"):
        group_folds(["A/v_A_g08_c01", "A/other"])


def _scenes_shared_by_group_number():
    """2 classes x 3 group numbers x 2 clips. A group number's videos share a strong
    'scene' vector in both classes, so a video's nearest other video is its sibling or the
    other class's video of its number; the class direction is weak."""
    rng = np.random.default_rng(0)
    scene = np.eye(16)[[2, 3, 4]] * 5.0  # orthogonal scenes: across numbers only the class
    direction = np.eye(16)[[0, 1]]
    feats, labels, folds = [], [], []
    for c in range(2):
        for g in range(3):
            for _ in range(2):
                feats.append(scene[g] + direction[c] + rng.normal(size=16) * 0.01)
                labels.append(c)
                folds.append(g + 8)
    return np.array(feats), np.array(labels), np.array(folds)


def test_held_out_group_recall_keeps_a_group_out_of_its_own_gallery():
    feats, labels, folds = _scenes_shared_by_group_number()
    got = held_out_group_recall(feats, labels, folds, ks=(1, 2), center=False)
    assert got["n_query"] == 12 and got["folds"] == 3
    # across group numbers only the class direction is shared: every query is a hit
    assert got["recall"][1] == 1.0
    # without the fold a video's 2nd neighbour is the other class's video of its scene
    # (the 1st is its sibling): the score would measure the scene, not the class
    sim_order, _ = neighbours(feats, feats, k=3, center=False)
    second = sim_order[:, 2]
    assert (labels[second] != labels).all() and (folds[second] == folds).all()


def test_held_out_group_recall_counts_misses():
    # fold 1's class-0 query is nearest to fold 2's class-1 video: one miss in four
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.2, 1.0]])
    labels, folds = np.array([0, 1, 1, 0]), np.array([1, 1, 2, 2])
    got = held_out_group_recall(feats, labels, folds, ks=(1, 2), center=False)
    # queries: (f1,c0)->nearest of f2 is [0.2,1] c0 hit; (f1,c1)->[0,1] c1 hit;
    # (f2,c1)->[0,1] c1 hit; (f2,c0 [0.2,1])->[0,1] c1 miss (cos .98 > .196)
    assert got["recall"] == {1: 0.75, 2: 1.0}


def test_held_out_group_recall_needs_two_groups():
    with pytest.raises(ValueError, match=">= 2 groups"):
        held_out_group_recall(np.eye(3), [0, 1, 2], [4, 4, 4])
