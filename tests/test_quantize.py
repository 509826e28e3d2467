import numpy as np
import torch

from motionclr.flow import dequantize, quantize


def test_round_trip_error_within_half_step():
    b = 20.0
    flow = np.random.default_rng(0).uniform(-b, b, (5, 7, 9, 2)).astype(np.float32)
    err = np.abs(dequantize(quantize(flow, b), b) - flow)
    assert err.max() <= b / 255 + 1e-5


def test_formula_and_clipping():
    b = 20.0
    q = quantize(np.array([-100.0, -20.0, 0.0, 20.0, 100.0]), b)
    assert q.tolist() == [0, 0, 128, 255, 255]
    assert np.allclose(dequantize(np.array([0, 255], np.uint8), b), [-20.0, 20.0])
    assert np.isclose(dequantize(np.array([128], np.uint8), b)[0], 128 * 40 / 255 - 20)


def test_other_bound_and_torch_tensor():
    q = quantize(np.array([3.0]), bound=5)
    assert q[0] == round((3 + 5) * 255 / 10)
    t = dequantize(torch.tensor([0, 255], dtype=torch.uint8), bound=5)
    assert torch.allclose(t, torch.tensor([-5.0, 5.0]))
