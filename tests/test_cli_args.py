"""Config files vs overrides on the command line, typed-as-typed str values, `config show`,
`--version`, `generate` sizes and `data.limit` (issue #14, items 4, 6 and 7)."""
import subprocess
import sys

import pytest

from motionclr import __version__
from motionclr.config import load_config, split_cli_args
from motionclr.datasets.sources import limit_entries, list_videos


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "motionclr", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_str_fields_keep_the_typed_text_and_yaml_off_is_not_a_bool(tmp_path):
    cfg = load_config(None, ["data.flip=off", "data.root=0123", "pipeline.address=no",
                             "flow.params.preset=off", "train.amp=false"])
    assert cfg.data.flip == "off" and cfg.data.root == "0123" and cfg.pipeline.address == "no"
    assert cfg.flow.params == {"preset": "off"} and cfg.train.amp is False
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  flip: off\n")          # unquoted in a file, too
    assert load_config([p]).data.flip == "off"


def test_words_split_by_the_shell_are_put_back_together(tmp_path):
    files, over = split_cli_args(["configs/demo.yaml", "method.terms={loss_mx:", "0.5,",
                                  "loss_mx_r:", "0}", "eval.finetune.views=[1x1,", "10x1]",
                                  "data.root=/my", "videos", "data.flip=off"])
    assert files == ["configs/demo.yaml"]
    assert over == ["method.terms={loss_mx: 0.5, loss_mx_r: 0}",
                    "eval.finetune.views=[1x1, 10x1]", "data.root=/my videos", "data.flip=off"]
    cfg = load_config(files, over)
    assert cfg.method.terms == {"loss_mx": 0.5, "loss_mx_r": 0}
    assert cfg.eval.finetune == {"views": ["1x1", "10x1"]} and cfg.data.root == "/my videos"
    with pytest.raises(FileNotFoundError, match="config file not found: nope.yaml"):
        split_cli_args(["nope.yaml"])
    with pytest.raises(ValueError, match="neither a config file"):
        split_cli_args(["configs/demo"])


def test_cli_accepts_the_readme_forms_and_refuses_ambiguous_words():
    res = _cli("config", "show", "--config", "configs/datasets/synthetic.yaml",
               "method.terms={loss_mx:", "0.5,", "loss_mx_r:", "0}", "data.flip=off")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(line.startswith("method.terms.loss_mx: 0.5") and line.endswith("# override")
               for line in lines)
    assert any(line.startswith("data.flip: 'off'") and line.endswith("# override")
               for line in lines)
    assert any(line.startswith("decode.short_side: 64") and
               line.endswith("# configs/datasets/synthetic.yaml") for line in lines)
    assert any(line.startswith("train.weight_decay: 0.0001") and line.endswith("# default")
               for line in lines)
    bad = _cli("pretrain", "--config", "configs/datasets/synthetic.yaml", "0.5}")
    assert bad.returncode == 2 and "neither a config file" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_version_and_config_show_of_a_run(tmp_path):
    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"motionclr {__version__}"
    from motionclr.config import save_config
    save_config(load_config(None, ["train.epochs=3"]), tmp_path / "config.yaml")
    res = _cli("config", "show", "--run", str(tmp_path), "train.lr=0.5")
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("train.epochs: 3 ") and
               line.endswith(f"# {tmp_path / 'config.yaml'}") for line in res.stdout.splitlines())
    assert any(line.startswith("train.lr: 0.5") and line.endswith("# override")
               for line in res.stdout.splitlines())


def test_generate_sizes(tmp_path):
    res = _cli("generate", f"data.root={tmp_path / 'g'}", "--groups", "1", "--clips", "1",
               "--frames", "6", "--size", "48x32")
    assert res.returncode == 0, res.stderr
    import cv2
    videos = sorted((tmp_path / "g").glob("*/*.avi"))
    assert len(videos) == 8                      # 8 classes x 1 group x 1 clip
    cap = cv2.VideoCapture(str(videos[0]))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (48, 32)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    bad = _cli("generate", "--size", "48")
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr


def test_limit_keeps_whole_classes_and_both_subsets(tiny_root):
    entries = list_videos("synthetic", tiny_root)         # 8 classes x (1 train + 1 test)
    kept = limit_entries(entries, 3)
    labels = {e.label for e in kept}
    assert labels == {0, 1}                                # 2 whole classes reach >= 3
    for lab in labels:
        mine = [e for e in entries if e.label == lab]
        assert [e for e in kept if e.label == lab] == mine
    assert {e.subset for e in kept} == {"train", "test"}
    assert limit_entries(entries, 0) == entries and limit_entries(entries, 999) == entries
    # the first N of the list (the old behaviour) held one subset only
    assert {e.subset for e in entries[:3]} != {"train", "test"}


def test_make_profile_cpu_adds_the_demo_sizes_and_help_lists_targets(tmp_path):
    from pathlib import Path
    mk = ["make", "-s", "-f", str(Path(__file__).resolve().parents[1] / "Makefile"),
          "-o", ".venv/bin/.installed", "MOTIONCLR=motionclr"]
    dry = subprocess.run(mk + ["-n", "pretrain", "PROFILE=cpu"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "configs/methods/moco.yaml configs/demo.yaml " in dry.stdout
    plain = subprocess.run(mk + ["-n", "pretrain"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert "configs/demo.yaml" not in plain.stdout
    bad = subprocess.run(mk + ["-n", "pretrain", "PROFILE=gpu"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "unknown PROFILE=gpu; known: cpu=configs/demo.yaml" in bad.stderr
    helped = subprocess.run(mk + ["help"], capture_output=True, text=True, cwd=tmp_path)
    for target in ("demo", "flow", "index", "pretrain", "eval-retrieval", "report", "PROFILE"):
        assert target in helped.stdout
