import pytest
import torch

from motionclr.datasets.distributed import EvalShardSampler, TrainShardSampler, gather_by_index


@pytest.mark.parametrize("n,world", [(10, 3), (7, 2), (8, 4), (5, 8)])
def test_eval_sampler_sees_every_video_once(n, world):
    seen = [i for r in range(world) for i in EvalShardSampler(n, world, r)]
    assert sorted(seen) == list(range(n))
    assert sum(len(EvalShardSampler(n, world, r)) for r in range(world)) == n


@pytest.mark.parametrize("n,world", [(10, 3), (7, 2), (64, 4)])
def test_train_sampler_equal_steps_disjoint_and_reshuffled(n, world):
    samplers = [TrainShardSampler(n, world, r, seed=1) for r in range(world)]
    orders = [list(s) for s in samplers]
    assert len({len(o) for o in orders}) == 1 and len(orders[0]) == n // world
    flat = [i for o in orders for i in o]
    assert len(set(flat)) == len(flat)                      # no duplicates across ranks
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != orders            # a new order each epoch


def test_gather_by_index_restores_order_and_catches_duplicates():
    n, world = 5, 2
    parts = []
    for r in range(world):
        idx = torch.tensor(list(EvalShardSampler(n, world, r)))
        parts.append((idx, idx.float()[:, None] * 10))
    assert gather_by_index(parts, n)[:, 0].tolist() == [0, 10, 20, 30, 40]
    with pytest.raises(RuntimeError, match="distinct"):
        gather_by_index(parts + [parts[0]], n)


def test_epoch_tagged_sampler_carries_the_epoch_into_persistent_workers(tiny_stage):
    """Persistent DataLoader workers keep the dataset copy they started with (its
    ``epoch`` never changes there); indices tagged with their epoch still give every epoch
    exactly the clips that ``set_epoch`` + plain indices give in the main process."""
    import numpy as np
    from torch.utils.data import DataLoader

    from motionclr.datasets.samplers import RandomClip
    from motionclr.datasets.shard_dataset import ShardClipDataset
    _, stage = tiny_stage
    ds = ShardClipDataset(stage, None, sampler=RandomClip(2, 1), seed=3)
    plain = TrainShardSampler(len(ds), seed=1)
    tagged = TrainShardSampler(len(ds), seed=1, epoch_tagged=True)
    loader = DataLoader(ds, batch_size=2, sampler=tagged, num_workers=1,
                        persistent_workers=True, collate_fn=list)
    for epoch in range(2):
        plain.set_epoch(epoch)
        tagged.set_epoch(epoch)
        assert list(tagged) == [(epoch, i) for i in plain]
        ds.set_epoch(epoch)
        want = [ds[i] for i in plain]
        got = [s for b in loader for s in b]
        assert [s["index"] for s in got] == list(plain)
        for w, g in zip(want, got):
            assert np.array_equal(w["starts"], g["starts"])
            assert np.array_equal(w["rgb"], g["rgb"]) and np.array_equal(w["flow"], g["flow"])
    ds.set_epoch(0)
    assert any(not np.array_equal(a["starts"], ds[i]["starts"])  # epochs differ
               for a, i in zip(want, plain))
