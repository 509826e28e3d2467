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
