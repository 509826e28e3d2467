"""Typed ``method.params`` (issue 13): unknown keys fail with the valid ones, values are
coerced, every shipped config and documented example stays valid, and pretrain checks
before it reads data or writes anything."""
import re
from pathlib import Path

import pytest

from motionclr.cli import main
from motionclr.config import load_config
from motionclr.train.methods import METHODS, validate_method

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SMALL = ["model.backbone=small3d", "model.width=4", "clip.clip_len=8"]


def _cfg(method_file: str, *over: str):
    return load_config([CONFIGS / "datasets" / "synthetic.yaml",
                        CONFIGS / "methods" / method_file, CONFIGS / "demo.yaml"],
                       list(over))


@pytest.mark.parametrize("path", sorted((CONFIGS / "methods").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_method_config_validates(path):
    extra = ["method.params.num_classes=8"] if path.stem == "supervised" else []
    p = validate_method(_cfg(path.name, *extra))
    # every param the file sets reaches the typed params with the file's value
    import yaml
    given = (yaml.safe_load(path.read_text()).get("method") or {}).get("params") or {}
    given.update({"num_classes": 8} if extra else {})  # the override above wins
    assert {k: getattr(p, k) for k in given} == given


@pytest.mark.parametrize("name,base", [("mscl+mcl", "mscl.yaml"), ("modist+mcl", "modist.yaml")])
def test_compositions_validate_with_their_parts_config(name, base):
    p = validate_method(_cfg(base, f"method.name={name}"))
    assert p.tubelet_sampler == "mcl" and p.motion_crop is True  # MCL's part, defaulted


def _documented_overrides() -> list[list[str]]:
    """Every ``make pretrain METHOD=m ARGS="..."`` line in README.md and docs/*.md."""
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(r'make pretrain METHOD=(\S+) ARGS="([^"]*)"', doc.read_text()):
            out.append([f"{m.group(1)}.yaml", *m.group(2).split()])
    return out


def test_documented_examples_validate():
    examples = _documented_overrides()
    assert any("method.params.tubelet_sampler=mcl" in e for e in examples)
    assert any("method.params.motion_crop=true" in e for e in examples)
    for method_file, *over in examples:
        validate_method(_cfg(method_file, *over))
    # docs/combinations.md's command line and YAML
    validate_method(_cfg("mscl.yaml", "method.name=mscl+mcl",
                         "method.params.tubelet_sampler=mds"))
    validate_method(_cfg("mscl.yaml", "method.name=mscl+mcl", "method.params.p_motion=0.7",
                         "method.params.mal_weight=1.0", "method.params.mal_warmup_weight=2.0"))
    validate_method(_cfg("vclr.yaml", "method.params.motion_crop=true",
                         "method.params.weights={segment: 0, order: 0}"))


@pytest.mark.parametrize("file,over,bad,valid", [
    ("mscl.yaml", ["method.name=mscl+mcl", "method.params.tubelet_samplr=mcl"],
     "tubelet_samplr", "tubelet_sampler"),
    ("vclr.yaml", ["method.params.motion_crp=true"], "motion_crp", "motion_crop"),
    ("moco.yaml", ["method.params.lr=1"], "lr", "none"),
    ("mcl.yaml", ["method.params.order_normalise=mcl"], "order_normalise", "order_normalize"),
])
def test_unknown_key_fails_and_lists_valid_ones(file, over, bad, valid):
    with pytest.raises(ValueError, match=rf"\['{bad}'\].*valid:.*{valid}"):
        validate_method(_cfg(file, *over))


def test_values_are_coerced_and_checked():
    p = validate_method(_cfg("vclr.yaml", "method.params.motion_crop=yes",
                             "method.params.segment_queue_size=64"))
    assert p.motion_crop is True and p.segment_queue_size == 64
    p = validate_method(_cfg("mcl.yaml", *SMALL, "method.params.p_motion='0.25'",
                             "method.params.order_weight=0.5"))
    assert p.p_motion == 0.25 and p.order_weight == 0.5
    with pytest.raises(ValueError, match="p_motion: expected float"):
        validate_method(_cfg("mcl.yaml", "method.params.p_motion=lots"))
    with pytest.raises(ValueError, match="fra='paperr'; valid"):
        validate_method(_cfg("mscl.yaml", "method.params.fra=paperr"))
    with pytest.raises(ValueError, match="segment_queue_size: expected an integer"):
        validate_method(_cfg("vclr.yaml", "method.params.segment_queue_size=1.5"))
    with pytest.raises(ValueError, match="fra=release"):  # weights of terms paper lacks
        validate_method(_cfg("mscl.yaml", "method.params.aug_flow_weights=[1, 0]"))
    validate_method(_cfg("mscl.yaml", "method.params.fra=release",
                         "method.params.aug_flow_weights=[1, 0]"))


def test_model_implications_checked_up_front():
    with pytest.raises(ValueError, match="T=1"):  # LMCL on r3d_18's last stage at 8 frames
        validate_method(_cfg("mscl.yaml", "model.backbone=r3d_18", "clip.clip_len=8",
                             "method.params.lmcl_layer=body.4"))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        validate_method(_cfg("supervised.yaml", "method.params.num_classes=0"))


def test_every_registered_method_has_a_schema():
    for name, cls in METHODS.items():
        assert cls.Params is not None, name


@pytest.mark.parametrize("file,over", [
    ("mscl.yaml", ["method.name=mscl+mcl", "method.params.tubelet_samplr=mcl"]),
    ("vclr.yaml", ["method.name=vclr", "method.params.motion_crp=true"])])
def test_pretrain_refuses_a_typo_before_reading_or_writing(tmp_path, capsys, file, over):
    run = tmp_path / "run"
    rc = main(["pretrain", "--config", str(CONFIGS / "methods" / file),
               f"data.cache={tmp_path / 'no-cache'}", f"data.root={tmp_path / 'no-data'}",
               f"train.run={run}", *over])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert over[1].split("=")[0].split(".")[-1] in err and "valid:" in err
    assert not run.exists() and not (tmp_path / "no-cache").exists()
