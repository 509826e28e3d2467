"""`motionclr bench methods` end to end on the tiny dataset (1 epoch): table and results."""
import json
from pathlib import Path

from motionclr.bench.methods import main
from tests.conftest import tiny_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_bench_methods_writes_its_section(tiny_stage, tiny_root, tmp_path, one_torch_thread):
    cfg, _ = tiny_stage
    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\nkept text\n")
    over = tiny_overrides(tiny_root, cfg.data.cache)
    args = ["--seeds", "1", "--epochs", "1", "--methods", "moco,supervised", "--out",
            str(out), "--workdir", str(tmp_path / "w"), "--configs", str(CONFIGS),
            "--quiet", "--set", *over]
    assert main(args) == 0
    text = out.read_text()
    assert "kept text" in text and "<!-- bench:methods:start -->" in text
    assert "| moco |" in text and "| supervised (labels; reference) |" in text
    rows = json.loads((tmp_path / "w" / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["moco", "supervised"]
    for r in rows:
        assert r["n_query"] == 8 and r["n_gallery"] == 8
        assert all(0.0 <= v <= 1.0 for v in r["recall"].values())
    # the section can be rewritten from the saved results without training again
    first = out.read_text()
    out.write_text("# Benchmarks\n")
    assert main(args + ["--render-only"]) == 0
    again = out.read_text()
    table = [ln for ln in first.splitlines() if ln.startswith("| moco")]
    assert table and table == [ln for ln in again.splitlines() if ln.startswith("| moco")]
