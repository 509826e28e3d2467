"""Shuffle-BN emulated on one process (motionclr/train/shuffle_bn.py): split statistics,
the key shuffle, and what it removes: a query and its key normalised with one sample set."""
import pytest
import torch
from torch import nn

from motionclr.config import Config
from motionclr.train.methods import build_method, validate_method
from motionclr.train.shuffle_bn import shuffled, split_batchnorm


def _bn_alone(x, state):
    """An unsplit BatchNorm3d loaded with ``state``, run on ``x`` in training mode:
    (output, the layer with its updated running statistics)."""
    ref = nn.BatchNorm3d(x.shape[1])
    ref.load_state_dict(state)
    return ref.train()(x), ref


def test_each_slice_is_normalised_with_its_own_statistics():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 2, 4, 4)
    x[4:] = x[4:] * 5 + 3  # the second slice has other statistics
    bn = nn.BatchNorm3d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    split_batchnorm(bn, 2)
    assert isinstance(bn, nn.BatchNorm3d) and bn.groups == 2
    assert set(bn.state_dict()) == set(before)  # checkpoints load either way
    out = bn.train()(x)
    halves = [_bn_alone(part, before) for part in (x[:4], x[4:])]
    torch.testing.assert_close(out, torch.cat([h[0] for h in halves]))
    # running statistics: the mean of the two slices' updates, one step counted
    torch.testing.assert_close(bn.running_mean, (halves[0][1].running_mean
                                                 + halves[1][1].running_mean) / 2)
    torch.testing.assert_close(bn.running_var, (halves[0][1].running_var
                                                + halves[1][1].running_var) / 2)
    assert int(bn.num_batches_tracked) == 1
    # the unsplit layer would have mixed the slices: not the same output
    assert not torch.allclose(out, _bn_alone(x, before)[0])
    # evaluation uses the running statistics, exactly as the parent class
    bn.eval()
    ref = nn.BatchNorm3d(3)
    ref.load_state_dict(bn.state_dict())
    torch.testing.assert_close(bn(x), ref.eval()(x))


def test_split_refuses_what_cannot_work():
    bn = split_batchnorm(nn.BatchNorm3d(2), 4)
    with pytest.raises(ValueError, match="cannot be split into 4 groups"):
        bn.train()(torch.randn(6, 2, 1, 2, 2))
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        split_batchnorm(nn.Sequential(nn.SyncBatchNorm(2)), 2)
    with pytest.raises(ValueError, match=">= 1"):
        split_batchnorm(nn.BatchNorm3d(2), 0)
    one = nn.BatchNorm3d(2)
    assert type(split_batchnorm(one, 1)) is nn.BatchNorm3d  # 1 = off, untouched


def test_shuffled_returns_rows_in_order_and_mixes_the_groups():
    x = torch.randn(8, 3, 2, 4, 4) + torch.arange(8.0).view(8, 1, 1, 1, 1)
    gen = torch.Generator().manual_seed(3)
    torch.testing.assert_close(shuffled(lambda z: z * 2, x, gen), x * 2)  # row-wise: same
    bn = split_batchnorm(nn.BatchNorm3d(3), 2).train()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    out = shuffled(bn, x, torch.Generator().manual_seed(5))
    # row i was normalised inside the slice of the permuted batch that holds it
    for half in (perm[:4], perm[4:]):
        ref = nn.BatchNorm3d(3).train()
        torch.testing.assert_close(out[half], ref(x[half]))
    assert not torch.allclose(out, bn(x))  # in order, the slices hold other rows


def _cfg(name, groups, batch=8):
    cfg = Config()
    cfg.model.backbone, cfg.model.width, cfg.model.dim = "small3d", 4, 16
    cfg.method.name, cfg.method.queue_size, cfg.method.shuffle_bn = name, 32, groups
    cfg.train.batch_size = batch
    cfg.clip.crop, cfg.clip.clip_len = 32, 8
    if name == "modist":
        cfg.method.params = {"flow_encoder_args": {"widths": [4, 8], "blocks": [1, 1]}}
    return cfg


def _batch(b=8, hw=40):
    g = torch.Generator().manual_seed(0)
    return {"rgb": torch.randint(0, 256, (b, 2, 3, 8, hw, hw), generator=g, dtype=torch.uint8),
            "flow": torch.randint(0, 256, (b, 2, 2, 8, hw, hw), generator=g, dtype=torch.uint8),
            "index": torch.arange(b)}


@pytest.mark.parametrize("name", ["moco", "modist"])
def test_method_keys_are_normalised_with_other_samples_than_their_queries(name):
    """The property shuffle-BN exists for: the rows beside a key in its BN slice are not
    its query's slice-mates. Recorded at the first BN of the online and momentum encoders."""
    torch.manual_seed(0)
    model = build_method(_cfg(name, 2))
    seen = {}

    def record(tag):
        def hook(mod, inp, out):
            seen[tag] = inp[0].detach().clone()
        return hook
    model.backbone.body[1].register_forward_hook(record("q"))
    model.momentum_backbone.body[1].register_forward_hook(record("k"))
    loss, _ = model(_batch(), torch.Generator().manual_seed(1))
    assert torch.isfinite(loss)
    loss.backward()
    # the key encoder's input rows are the key views permuted: recompute its conv on the
    # views in order and find each recorded row among them
    v2 = model.views(_batch(), torch.Generator().manual_seed(1))[1]
    with torch.no_grad():
        conv_in_order = model.momentum_backbone.body[0](v2["rgb"])
    where = [int((conv_in_order - row).flatten(1).abs().sum(1).argmin()) for row in seen["k"]]
    assert sorted(where) == list(range(8)) and where != list(range(8))
    q_slice = {i: i // 4 for i in range(8)}                    # queries: in order
    k_slice = {row: pos // 4 for pos, row in enumerate(where)}  # keys: where the shuffle put them
    mates = [sum(q_slice[j] == q_slice[i] and k_slice[j] == k_slice[i] for j in range(8)) - 1
             for i in range(8)]
    assert sum(mates) < 8 * 3  # not every key shares its query's three slice-mates
    # and the keys differ from those of the same weights with one BN group, in order
    plain = build_method(_cfg(name, 1))
    plain.load_state_dict(model.state_dict())
    model._step_gen = torch.Generator().manual_seed(7)
    assert not torch.allclose(model.encode_k(v2["rgb"]), plain.encode_k(v2["rgb"]))


def test_off_by_default_and_checked_before_any_work():
    cfg = Config()
    assert cfg.method.shuffle_bn == 1
    for bad, match in ((0, ">= 1"), (8, "at least 2")):
        c = _cfg("moco", bad, batch=8)
        with pytest.raises(ValueError, match=match):
            validate_method(c)
    sup = _cfg("supervised", 2)
    sup.method.params = {"num_classes": 3}
    model = build_method(sup)
    assert type(model.backbone.body[1]) is nn.BatchNorm3d  # no keys: nothing to shuffle
