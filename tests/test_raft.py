"""RAFT wrapper plumbing with random weights: shapes, input scaling, padding, checkpoint loading.

Random weights say nothing about flow quality; these tests only check the wrapper.
"""
import numpy as np
import pytest
import torch
from torchvision.models import optical_flow

from motionclr.flow import compute_flow
from motionclr.flow import synthetic as S
from motionclr.flow.raft import raft_large, raft_pairs, raft_small


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frames():
    return S.load_clip("bunny_wide", size=(128, 136), start=40, n_frames=3)  # real decoded frames


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = optical_flow.raft_small(weights=None).eval()
    path = tmp_path_factory.mktemp("raft") / "raft_small_test.pth"
    torch.save(model.state_dict(), path)
    return model, str(path)


def test_missing_checkpoint_names_the_option(frames):
    with pytest.raises(FileNotFoundError, match=r"flow\.params\.checkpoint"):
        raft_small(frames)
    with pytest.raises(FileNotFoundError, match=r"flow\.params\.checkpoint"):
        raft_large(frames, checkpoint="/nonexistent/raft_large.pth")


def test_bad_arguments_raise(frames):
    with pytest.raises(ValueError, match="valid:.*num_flow_updates"):
        raft_small(frames, allow_random_weights=True, iters=3)
    with pytest.raises(ValueError, match="at least 128"):
        raft_small(frames[:, :96, :96].copy(), allow_random_weights=True)


def test_checkpoint_output_equals_model_on_scaled_input(frames, small_ckpt):
    model, path = small_ckpt
    flow = raft_small(frames, checkpoint=path, num_flow_updates=2)
    assert flow.shape == (2, 128, 136, 2) and flow.dtype == np.float32
    # reference: the same weights on RGB scaled to [-1, 1] (128x136 needs no padding)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        ref = model(x[:-1], x[1:], num_flow_updates=2)[-1].permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(flow, ref, atol=1e-4)


def test_batches_equal_single_pairs(frames, small_ckpt):
    _, path = small_ckpt
    a = raft_small(frames, checkpoint=path, num_flow_updates=2, batch_size=2)
    b = raft_small(frames, checkpoint=path, num_flow_updates=2, batch_size=1)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_padding_to_multiple_of_8_is_cropped_back(small_ckpt):
    model, path = small_ckpt
    f = S.load_clip("bunny_wide", size=(130, 141), start=40, n_frames=2)
    flow = raft_small(torch.from_numpy(f), checkpoint=path, num_flow_updates=2)
    assert torch.is_tensor(flow) and flow.shape == (1, 130, 141, 2)
    assert torch.isfinite(flow).all()
    # same as padding by hand (replicate, 136x144) and cropping the centre back
    x = torch.from_numpy(f).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    ref = raft_pairs(model, x[:1], x[1:], num_flow_updates=2)
    xp = torch.nn.functional.pad(x, (1, 2, 3, 3), mode="replicate")
    with torch.no_grad():
        full = model(xp[:1], xp[1:], num_flow_updates=2)[-1]
    torch.testing.assert_close(ref, full[..., 3:133, 1:142].permute(0, 2, 3, 1))
    torch.testing.assert_close(flow, ref, atol=1e-4, rtol=0)


def test_state_dict_with_module_prefix_loads(frames, small_ckpt, tmp_path):
    model, path = small_ckpt
    wrapped = {"model": {"module." + k: v for k, v in model.state_dict().items()}}
    alt = tmp_path / "ddp.pth"
    torch.save(wrapped, alt)
    np.testing.assert_allclose(raft_small(frames, checkpoint=str(alt), num_flow_updates=1),
                               raft_small(frames, checkpoint=path, num_flow_updates=1), atol=1e-5)


def test_raft_large_random_weights_through_registry(frames):
    flow = compute_flow(frames[:2], "raft_large", allow_random_weights=True, num_flow_updates=1)
    assert flow.shape == (1, 128, 136, 2) and np.isfinite(flow).all()
