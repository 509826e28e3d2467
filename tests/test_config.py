import pytest

from motionclr.config import load_config, save_config


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("train:\n  epochs: 7\n  lr: 0.5\nflow:\n  params: {warps: 3}\n")
    cfg = load_config([p], ["train.epochs=9", "flow.params.nscales=2", "train.amp=false"])
    assert cfg.train.epochs == 9 and cfg.train.lr == 0.5 and cfg.train.amp is False
    assert cfg.flow.params == {"warps": 3, "nscales": 2}


def test_unknown_key_lists_valid_choices():
    with pytest.raises(KeyError, match="valid keys under train: .*epochs"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(KeyError, match="valid keys under the top level"):
        load_config(None, ["trian.epochs=3"])


def test_types_are_checked():
    with pytest.raises(ValueError, match="expected int"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ValueError, match="integer"):
        load_config(None, ["train.epochs=2.5"])
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["method.name=moco", "eval.ks=[1, 5]"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config([tmp_path / "c.yaml"])
    assert again == cfg
