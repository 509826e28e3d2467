import numpy as np
import pytest

from motionclr.eval.retrieval import recall_at_k


def test_known_answers():
    # Gallery: class 0 along +x, class 1 along +y. Query 0 is nearest a class-1 item first.
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    g_labels = np.array([0, 0, 1, 1])
    queries = np.array([[0.2, 1.0], [0.0, 1.0]])
    q_labels = np.array([0, 1])
    r = recall_at_k(queries, q_labels, gallery, g_labels, ks=(1, 2, 3, 10), center=False)
    assert r == {1: 0.5, 2: 0.5, 3: 1.0, 10: 1.0}


def test_centering_per_set_removes_a_domain_shift():
    # The query set is shifted by (+5, 0): uncentred, the class-1 query looks like class 0.
    gallery, g_labels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    queries, q_labels = np.array([[6.0, 0.0], [5.0, 1.0]]), np.array([0, 1])
    assert recall_at_k(queries, q_labels, gallery, g_labels, ks=(1,), center=False) == {1: 0.5}
    assert recall_at_k(queries, q_labels, gallery, g_labels, ks=(1,), center=True) == {1: 1.0}


def test_k_beyond_gallery_and_counts():
    rng = np.random.default_rng(0)
    g, q = rng.normal(size=(5, 3)), rng.normal(size=(13, 3))
    r = recall_at_k(q, rng.integers(0, 2, 13), g, np.array([0, 1, 0, 1, 0]), ks=(1, 50))
    assert r[50] == 1.0                     # every query has both classes within 5
    assert r[1] * 13 == pytest.approx(round(r[1] * 13))  # all 13 queries counted
