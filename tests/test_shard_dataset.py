import multiprocessing as mp

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from motionclr.datasets.samplers import RandomClip, UniformClips
from motionclr.datasets.shard_dataset import ShardClipDataset, batch_to_device
from motionclr.storage.shards import read_video


def test_sample_is_uint8_dict_aligned_with_stored_arrays(tiny_stage):
    _, stage = tiny_stage
    ds = ShardClipDataset(stage, "train", sampler=RandomClip(4, 2, num_clips=2), train=True)
    s = ds[3]
    assert set(s) >= {"rgb", "flow", "label", "video_id", "starts"}
    # Stored layout (V, T, H, W, C): no transpose in the worker.
    assert s["rgb"].dtype == np.uint8 and s["rgb"].shape == (2, 4, 32, 42, 3)
    assert s["flow"].shape == (2, 4, 32, 42, 2)
    rgb, flow, _ = read_video(stage, s["video_id"])
    for v in range(2):
        idx = int(s["starts"][v]) + 2 * np.arange(4)
        # Flow index i is frame i -> i+1: the clip's flow uses the same indices as its frames.
        assert np.array_equal(s["rgb"][v], rgb[idx])
        assert np.array_equal(s["flow"][v], flow[np.minimum(idx, len(flow) - 1)])
    assert 0 <= s["label"] < 8
    moved = batch_to_device({k: torch.as_tensor(s[k])[None] for k in ("rgb", "flow")}, "cpu")
    assert moved["rgb"].shape == (1, 2, 3, 4, 32, 42)
    assert torch.equal(moved["flow"][0, 1, :, 2], torch.as_tensor(s["flow"][1, 2]).permute(2, 0, 1))


def test_deterministic_per_seed_epoch_index(tiny_stage):
    _, stage = tiny_stage
    ds = ShardClipDataset(stage, "train", sampler=RandomClip(4, 1, 2), window=24, seed=5)
    a, b = ds[1], ds[1]
    assert np.array_equal(a["rgb"], b["rgb"]) and a["rgb"].shape[2:4] == (24, 24)
    ds.set_epoch(1)
    assert not np.array_equal(ds[1]["starts"], a["starts"]) or \
        not np.array_equal(ds[1]["rgb"], a["rgb"])


@pytest.mark.parametrize("workers,ctx", [(0, None), (2, "fork"), (2, "spawn")])
def test_dataloader_workers_give_identical_batches(tiny_stage, workers, ctx):
    _, stage = tiny_stage
    ds = ShardClipDataset(stage, "test", sampler=UniformClips(4, 1, 3), train=False, window=32)
    kw = {"multiprocessing_context": mp.get_context(ctx)} if ctx else {}
    loader = DataLoader(ds, batch_size=3, num_workers=workers, **kw)
    batches = list(loader)
    ref = [ds[i] for i in range(len(ds))]
    got_ids = [v for b in batches for v in b["video_id"]]
    assert got_ids == [r["video_id"] for r in ref]          # every video exactly once
    rgb = torch.cat([b["rgb"] for b in batches])
    assert rgb.dtype == torch.uint8
    assert np.array_equal(rgb.numpy(), np.stack([r["rgb"] for r in ref]))


def test_unknown_subset_is_a_clear_error(tiny_stage):
    _, stage = tiny_stage
    with pytest.raises(ValueError, match="train"):
        ShardClipDataset(stage, "validation")


def test_manifest_layout_spares_hdf5_metadata_reads(tiny_stage):
    """Chunk offsets recorded at pack time: a cold reader never asks HDF5 for metadata."""
    from motionclr.storage.shards import load_manifest
    _, stage = tiny_stage
    v = load_manifest(stage)["videos"][0]
    assert set(v["layout"]) == {"rgb", "flow"}
    ds = ShardClipDataset(stage, None, sampler=UniformClips(4, 1, 2), train=False)
    _, reader = ds._shard(v["shard"])

    def no_metadata():
        raise AssertionError("HDF5 metadata lookup on a recorded layout")
    rgb, flow, _ = read_video(stage, v["video_id"])
    idx = np.array([0, 2, 5, 6])
    assert np.array_equal(reader.read((v["video_id"], "rgb"), idx, no_metadata), rgb[idx])
    assert np.array_equal(reader.read((v["video_id"], "flow"), idx, no_metadata), flow[idx])
