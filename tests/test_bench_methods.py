"""`motionclr bench methods` end to end on tiny versions of both embedded datasets (1 epoch):
tables, the per-run cache (resume, selection) and rendering from results.json."""
import json
from pathlib import Path

import pytest

from motionclr.bench import methods as bm
from motionclr.bench.methods import main
from motionclr.datasets import synthetic_objects
from motionclr.errors import UserError
from tests.conftest import tiny_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def tiny_objects_root(tmp_path_factory):
    """24 object-motion videos (8 classes x 3 groups, group 1 = test; two train groups for
    the validation score), 12 frames of 64x48."""
    return synthetic_objects.generate(tmp_path_factory.mktemp("obj"), groups=3, clips=1,
                                      n_frames=12, size=(64, 48), seed=0)


def test_bench_methods_runs_in_pieces_and_renders(tiny_stage, tiny_root, tiny_objects_root,
                                                  tmp_path, one_torch_thread):
    cfg, _ = tiny_stage
    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\nkept text\n")
    # the tiny budget for every run; each dataset keeps its own name, root given per dataset
    over = [o for o in tiny_overrides(tiny_root, cfg.data.cache)
            if not o.startswith(("data.dataset=", "data.root="))]
    base = ["--seeds", "2", "--epochs", "1", "--out", str(out), "--workdir",
            str(tmp_path / "w"), "--configs", str(CONFIGS), "--quiet",
            "--root", f"synthetic={tiny_root}", f"synthetic-objects={tiny_objects_root}",
            "--set", *over]
    # piece 1: moco and supervised, seed 0, both datasets
    assert main(base + ["--tables", "headline", "--methods", "moco,supervised",
                        "--only-seeds", "0"]) == 0
    saved = json.loads((tmp_path / "w" / "results.json").read_text())
    (runs,) = saved["budgets"].values()
    assert sorted(runs) == ["synthetic-objects/moco/default/s0",
                            "synthetic-objects/supervised/default/s0",
                            "synthetic/moco/default/s0", "synthetic/supervised/default/s0"]
    for k, r in runs.items():
        assert r["n_query"] == 8 and r["seed"] == 0
        assert r["n_gallery"] == (16 if k.startswith("synthetic-objects/") else 8)
        assert all(0.0 <= v <= 1.0 for v in r["recall"].values())
        assert "--only-seeds 0" in r["command"] and r["cpu_seconds"] > 0
    assert runs["synthetic-objects/moco/default/s0"]["dataset"] == "synthetic-objects"
    # every row carries a linear probe of its frozen features, chosen on train only
    for r in runs.values():
        lin = r["linear"]
        assert lin["classifier"] == "bn_linear" and 0.0 <= lin["top1"] <= lin["top5"] <= 1.0
        assert set(lin["hparams"]) == {"lr", "wd"}
    sup = runs["synthetic-objects/supervised/default/s0"]
    probe_file = json.loads((tmp_path / "w" / "synthetic-objects" / "supervised-default-s0"
                             / "linear.json").read_text())
    assert probe_file["classifiers"]["bn_linear"]["top1"] == sup["linear"]["top1"]
    assert "never 'test'" in probe_file["protocol"]["selection"]
    assert "loss" in runs["synthetic/moco/default/s0"]["final_terms"]
    per_class = runs["synthetic-objects/moco/default/s0"]["per_class_r1"]
    assert len(per_class) == 8 and "ZoomOut" in per_class
    # one query per class here: the per-class hits add up to R@1
    r1 = runs["synthetic-objects/moco/default/s0"]["recall"]["1"]
    assert abs(sum(per_class.values()) / 8 - r1) < 1e-9
    text = out.read_text()
    assert "kept text" in text and "<!-- bench:methods:start -->" in text
    assert "### object motion (`synthetic-objects`)" in text
    assert "| supervised (labels; reference) |" in text
    # the headline rows (8 cells; the per-class tables have 9)
    moco_rows = [ln for ln in text.splitlines() if ln.startswith("| moco |")
                 and ln.count("|") == 9]
    assert len(moco_rows) == 2 and all("(1/2)" in ln for ln in moco_rows)
    assert "R@1 per query class" in text and "| method | MoveRight |" in text
    assert "| mscl | not run |" in text  # the rest of the plan is shown as missing
    # piece 2: the other seed of moco on object motion; cached runs are not retrained
    before = (tmp_path / "w" / "synthetic" / "moco-default-s0" / "checkpoint.pt").stat()
    assert main(base + ["--tables", "headline", "--methods", "moco",
                        "--datasets", "synthetic-objects"]) == 0
    runs = next(iter(json.loads((tmp_path / "w" / "results.json").read_text())
                     ["budgets"].values()))
    assert "synthetic-objects/moco/default/s1" in runs and len(runs) == 5
    after = (tmp_path / "w" / "synthetic" / "moco-default-s0" / "checkpoint.pt").stat()
    assert before.st_mtime_ns == after.st_mtime_ns
    obj_moco = [ln for ln in out.read_text().splitlines()
                if ln.startswith("| moco |") and ln.count("|") == 9][1]
    assert obj_moco.endswith("| 0,1 |") and "±" in obj_moco  # two seeds: a spread
    # the section is rewritten from the saved results alone
    first = out.read_text()
    out.write_text("# Benchmarks\n")
    assert main(base + ["--render-only"]) == 0
    table = [ln for ln in first.splitlines() if ln.startswith("| moco")]
    assert table == [ln for ln in out.read_text().splitlines() if ln.startswith("| moco")]
    # a two-stream method's row carries its flow pathway's retrieval (the motion teacher)
    assert main(base + ["--tables", "headline", "--methods", "modist", "--datasets",
                        "synthetic-objects", "--only-seeds", "0"]) == 0
    path = tmp_path / "w" / "results.json"
    saved = json.loads(path.read_text())
    runs = next(iter(saved["budgets"].values()))
    got = runs["synthetic-objects/modist/default/s0"]["flow_pathway"]
    assert 0.0 <= got["r1"] <= 1.0 and len(got["per_class_r1"]) == 8
    assert abs(sum(got["per_class_r1"].values()) / 8 - got["r1"]) < 1e-9
    assert runs["synthetic-objects/moco/default/s0"].get("flow_pathway", {}) == {}
    assert "| modist: flow pathway (" in out.read_text()
    # the validation score: each of the 2 train groups queries the other (16 queries); the
    # camera set's tiny train split has one group, so it has none
    val = runs["synthetic-objects/modist/default/s0"]["val"]
    assert val["n_query"] == 16 and val["folds"] == 2 and val["unit"] == "group"
    assert 0.0 <= val["r1"] <= val["r5"] <= 1
    assert runs["synthetic/moco/default/s0"]["val"] == {}
    # the same score from the command line, written beside the run; one line without groups
    from motionclr.cli import main as cli
    obj_run = tmp_path / "w" / "synthetic-objects" / "modist-default-s0"
    assert cli(["eval", "val-retrieval", "--run", str(obj_run), "--device", "cpu"]) == 0
    saved_val = json.loads((obj_run / "val_retrieval.json").read_text())
    assert saved_val["recall"]["1"] == val["r1"] and saved_val["folds"] == 2
    assert saved_val["protocol"]["subset"] == "train"
    assert cli(["eval", "val-retrieval", "--run", str(tmp_path / "w" / "synthetic" /
                                                       "moco-default-s0"), "--device", "cpu"]) == 2
    # and how its RGB embedding matches its own flow against the same flow reversed
    align = runs["synthetic-objects/modist/default/s0"]["cross_modal"]
    assert align["n_clips"] == 8 * 2  # 8 test videos x eval.num_clips (tiny budget: 2)
    assert -1.0 <= align["cos_reversed"] <= 1.0 and -1.0 <= align["cos_own"] <= 1.0
    assert 0.0 <= align["own_beats_reversed"] <= 1.0
    assert runs["synthetic-objects/moco/default/s0"]["cross_modal"] == {}
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| modist | default |")]
    assert len(rows) == 1 and rows[0].endswith(f"| {100 * align['own_beats_reversed']:.0f} |")
    lin = runs["synthetic-objects/modist/default/s0"]["linear"]
    # --backfill recomputes both probes from the checkpoint for a row that lacks them
    del runs["synthetic-objects/modist/default/s0"]["flow_pathway"]
    del runs["synthetic-objects/modist/default/s0"]["linear"]
    del runs["synthetic-objects/modist/default/s0"]["cross_modal"]
    del runs["synthetic-objects/modist/default/s0"]["val"]
    path.write_text(json.dumps(saved))
    assert main(base + ["--render-only", "--backfill"]) == 0
    runs = next(iter(json.loads(path.read_text())["budgets"].values()))
    assert runs["synthetic-objects/modist/default/s0"]["flow_pathway"] == got
    assert runs["synthetic-objects/modist/default/s0"]["cross_modal"] == align
    assert runs["synthetic-objects/modist/default/s0"]["linear"] == lin
    assert runs["synthetic-objects/modist/default/s0"]["val"] == val
    # a row without the probe renders "–" in the linear column, not a made-up number
    del runs["synthetic-objects/modist/default/s0"]["linear"]
    path.write_text(json.dumps(saved | {"budgets": {next(iter(saved["budgets"])): runs}}))
    assert main(base + ["--render-only"]) == 0
    row = next(ln for ln in out.read_text().splitlines() if ln.startswith("| modist |")
               and ln.count("|") == 9)
    assert row.split("|")[4].strip() == "–"
    # --reprobe recomputes a probe a row already has (its protocol changed), only that one
    runs["synthetic-objects/modist/default/s0"]["linear"] = {**lin, "top1": 2.0}
    runs["synthetic-objects/modist/default/s0"]["val"] = {**val, "r1": 2.0}
    path.write_text(json.dumps(saved | {"budgets": {next(iter(saved["budgets"])): runs}}))
    assert main(base + ["--render-only", "--reprobe", "linear"]) == 0
    runs = next(iter(json.loads(path.read_text())["budgets"].values()))
    assert runs["synthetic-objects/modist/default/s0"]["linear"] == lin
    assert runs["synthetic-objects/modist/default/s0"]["val"]["r1"] == 2.0
    with pytest.raises(UserError, match="unknown probe"):
        main(base + ["--render-only", "--reprobe", "lineer"])


def test_plan_covers_the_ablations_and_combinations():
    runs = bm.plan(bm.TABLES, bm.DATASETS, list(bm.DEFAULT_METHODS), [0, 1, 2])
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    head = [r for r in runs if r.variant == bm.FULL and r.method in bm.DEFAULT_METHODS]
    assert len(head) == 2 * 6 * 3
    for method, terms in (("mcl", ["loss_inter", "loss_intra", "loss_order", "loss_mal"]),
                          ("vclr", ["loss_inter", "loss_intra", "loss_segment", "loss_order"])):
        mine = [r for r in runs if r.method == method and r.variant != bm.FULL]
        # the ablations are on object motion; only the select table's weights on both
        grid = set(bm.SELECT.get(method, (None, {}))[1])
        assert {r.dataset for r in mine if r.variant not in grid} == {"synthetic-objects"}
        assert {r.variant for r in mine if r.dataset == "synthetic"} <= grid
        offs = {o for r in mine for o in r.overrides}
        assert {f"method.terms.{t}=0" for t in terms} <= offs
    assert {r.method for r in runs} >= {"modist+mcl", "mscl+mcl"}
    # every variant's overrides load onto the object-motion config of its method
    for method, variants in bm.ABLATIONS.items():
        for _, (_, over) in variants.items():
            cfg = bm.method_config(bm.Run("synthetic-objects", method, 0, "v", tuple(over)), 1,
                                   Path("x"), CONFIGS, [])
            assert cfg.data.dataset == "synthetic-objects" and cfg.method.name == method


def test_list_shows_the_selection_without_training(tmp_path, capsys):
    assert main(["--list", "--tables", "mcl", "--only-seeds", "1", "--workdir",
                 str(tmp_path), "--configs", str(CONFIGS)]) == 0
    out = capsys.readouterr().out
    assert "7 run(s) selected" in out and "synthetic-objects/mcl/no-mal/s1" in out
    assert not (tmp_path / "results.json").exists()


def test_rows_from_pieces_run_side_by_side_are_merged(tmp_path):
    """Two benches sharing a workdir each save only their own finished run; the file is
    re-read under the lock, so neither overwrites the other's row."""
    path = tmp_path / "results.json"
    row = {"recall": {1: 0.25, 5: 0.5}, "seed": 0, "seconds": 1.0}
    first = bm.save_row(path, "budget", "synthetic/moco/default/s0", row)
    assert list(first["budget"]) == ["synthetic/moco/default/s0"]
    # the other bench started before the first row existed and knows nothing of it
    bm.save_row(path, "budget", "synthetic-objects/mcl/no-mal/s1", {**row, "seed": 1})
    cache = bm.load_cache(path)
    assert sorted(cache["budget"]) == ["synthetic-objects/mcl/no-mal/s1",
                                       "synthetic/moco/default/s0"]
    assert cache["budget"]["synthetic/moco/default/s0"]["recall"] == {1: 0.25, 5: 0.5}


def _row(val_r1: float, test_r1: float, seed: int) -> dict:
    return {"recall": {1: test_r1, 5: test_r1}, "seed": seed, "seconds": 1.0,
            "val": {"r1": val_r1, "r5": val_r1, "n_query": 128, "folds": 4}}


def test_the_weight_is_chosen_by_the_validation_score_never_the_test_score():
    grid = bm.SELECT["modist"][1]
    cells = {bm.FULL: [_row(0.30, 0.90, 0), _row(0.30, 0.90, 1)],   # best on test
             "rgb-0.25": [_row(0.60, 0.40, 0), _row(0.50, 0.40, 1)],  # best on val
             "no-rgb": [_row(0.55, 0.80, 0), _row(0.50, 0.80, 1)]}
    assert bm.chosen_variant(cells, grid) == "rgb-0.25"
    # a tie goes to the weight nearer the reference's (1)
    cells["no-rgb"] = [_row(0.60, 0.80, 0), _row(0.50, 0.80, 1)]
    assert bm.chosen_variant(cells, grid) == "rgb-0.25"
    # no choice among part of the grid: a missing run or a missing score
    assert bm.chosen_variant({**cells, "no-rgb": []}, grid) is None
    assert bm.chosen_variant({**cells, "no-rgb": [{**_row(0.9, 0.9, 0), "val": {}}]},
                             grid) is None


def test_select_runs_set_each_methods_instance_term():
    runs = bm.table_runs("select", bm.DATASETS, [], [0])
    over = {(r.dataset, r.method, r.variant): r.overrides for r in runs}
    assert len(runs) == 2 * 3 * 3
    assert over[("synthetic", "mcl", "inter-0.25")] == ("method.terms.loss_inter=0.25",)
    assert over[("synthetic-objects", "mscl", "no-rgb")] == ("method.terms.loss_rgb=0",)
    assert over[("synthetic", "modist", bm.FULL)] == ()
    # the object-motion runs the ablation tables already have are the same runs (keys)
    abl = {r.key: r.overrides for t in ("modist", "mcl") for r in bm.table_runs(t, [], [], [0])}
    for r in runs:
        if r.key in abl:
            assert abl[r.key] == r.overrides
    for r in runs:  # every override loads onto its method's config
        cfg = bm.method_config(r, 1, Path("x"), CONFIGS, [])
        assert cfg.method.name == r.method


def test_select_table_marks_the_validation_choice_with_its_test_numbers():
    cache = {}
    for ds in bm.DATASETS:
        for s in (0, 1, 2):
            cache[f"{ds}/moco/default/s{s}"] = _row(0.10, 0.125, s)
            for m, (_, grid) in bm.SELECT.items():
                for v, (val, test) in zip(grid, [(0.2, 0.3), (0.5, 0.6), (0.7, 0.5)]):
                    cache[f"{ds}/{m}/{v}/s{s}"] = _row(val, test, s)
    text = "\n".join(bm.select_table(cache, [0, 1, 2], ""))
    for ds in bm.DATASETS:
        for m, (term, _) in bm.SELECT.items():
            chosen = [ln for ln in text.splitlines() if ln.startswith(f"| {ds} | **{m}** |")]
            # weight 0 wins on val (70 %) and is reported with its own test R@1 (50 %)
            assert chosen == [f"| {ds} | **{m}** | **`{term}`=0** | 70.0 ± 0.0 | 50.0 ± 0.0 | "
                              "50.0 ± 0.0 | – | +37.5 | 0,1,2 |"]
    # a grid point without runs leaves the method unchosen, shown as not run
    for s in (0, 1, 2):
        del cache[f"synthetic/mscl/rgb-0.25/s{s}"]
    text = "\n".join(bm.select_table(cache, [0, 1, 2], ""))
    assert "| synthetic | mscl | `loss_rgb`=0.25 | not run |" in text
    assert "| synthetic | **mscl** |" not in text and "| synthetic | **mcl** |" in text


def test_rows_trained_with_other_preset_values_are_hidden_and_retrained(
        tiny_stage, tiny_root, tmp_path, capsys, one_torch_thread):
    """The cache key is the command line; a preset edited since a row was trained must not
    render that row's numbers as the new preset's."""
    import shutil
    cfg, _ = tiny_stage
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    over = [o for o in tiny_overrides(tiny_root, cfg.data.cache)
            if not o.startswith(("data.dataset=", "data.root="))]
    base = ["--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "bench.md"),
            "--workdir", str(tmp_path / "w"), "--configs", str(configs), "--quiet",
            "--root", f"synthetic={tiny_root}", "--set", *over]
    one = base + ["--tables", "headline", "--methods", "moco", "--datasets", "synthetic"]
    path = tmp_path / "w" / "results.json"

    def saved_row():
        (row,) = next(iter(json.loads(path.read_text())["budgets"].values())).values()
        return row

    assert main(one) == 0
    first = saved_row()
    gray = first["settings"]["data.augment.gray_p"]  # the preset's value, as the run got it
    assert f"gray_p: {gray}," in (configs / "datasets" / "synthetic.yaml").read_text()
    assert first["settings"]["clip.stride"] == 1 and "train.run" not in first["settings"]
    # a preset value that --set overrides is not what the run gets: still current
    preset = configs / "datasets" / "synthetic.yaml"
    preset.write_text(preset.read_text().replace("stride: 2", "stride: 3"))
    capsys.readouterr()
    assert main(one + ["--list"]) == 0
    assert "cached  synthetic/moco/default/s0" in capsys.readouterr().out
    # one the run does get: the row is neither rendered nor kept as done
    other = 0.25 if gray != 0.25 else 0.75
    preset.write_text(preset.read_text().replace(f"gray_p: {gray},", f"gray_p: {other},"))
    with pytest.raises(UserError, match="no cached runs"):
        main(base + ["--render-only"])
    out = capsys.readouterr().out
    assert "1 cached run(s) were trained with settings" in out
    assert f"data.augment.gray_p: {gray} -> {other}" in out
    assert main(one) == 0
    again = saved_row()
    assert again["settings"]["data.augment.gray_p"] == other
    assert again["cpu_seconds"] != first["cpu_seconds"]  # trained again, not relabelled
    # a row cached before rows kept their settings takes them from its own run's config,
    # and only while that run's retrieval is the row's
    data = json.loads(path.read_text())
    row = next(iter(data["budgets"].values()))["synthetic/moco/default/s0"]
    del row["settings"]
    path.write_text(json.dumps(data))
    assert main(base + ["--render-only"]) == 0
    assert saved_row()["settings"] == again["settings"]
    data = json.loads(path.read_text())
    row = next(iter(data["budgets"].values()))["synthetic/moco/default/s0"]
    del row["settings"]
    row["recall"]["1"] = row["recall"]["1"] + 0.5  # the run directory is another run's
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="no cached runs"):
        main(base + ["--render-only"])
    assert "settings unknown" in capsys.readouterr().out
