"""`motionclr bench gpu --small` on the CPU: every section runs end to end (so the GPU benchmark
cannot rot while no GPU is around), writes its JSON and only its own markdown section."""
import json

import pytest

from motionclr.bench.gpu import END, START, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_gpu_small_on_cpu(tmp_path):
    out = tmp_path / "benchmarks.md"
    out.write_text(f"# Benchmarks\n\n{START}\nold\n{END}\n\n<!-- bench:flow:start -->\nflow "
                   "table\n<!-- bench:flow:end -->\n")
    js = tmp_path / "r.json"
    argv = ["--small", "--device", "cpu", "--threads", "1", "--workdir", str(tmp_path / "w"),
            "--json", str(js), "--out", str(out)]
    assert main(argv) == 0
    res = json.loads(js.read_text())
    s = res["sections"]
    assert res["device"] == "cpu" and not res["skipped"]
    rows = s["tvl1"]["rows"]
    assert {r["preset"] for r in rows} == {"opencv", "fast"}
    assert all(r["pairs_per_s"] > 0 and r["peak_mib"] is None for r in rows)
    # the opencv preset is OpenCV's algorithm: close to it on the same real pairs
    assert next(r for r in rows if r["preset"] == "opencv")["epe_vs_opencv"] < 0.1
    assert set(s["tvl1"]["gt_epe"]) == {"opencv_cpu", "opencv", "fast"}
    assert set(s["tvl1"]["gt_epe"]["fast"]) == {"shift", "rotate", "zoom", "mixed"}
    assert {r["arch"] for r in s["raft"]["rows"]} == {"raft_small", "raft_large"}
    assert all(r["weights"] == "random" for r in s["raft"]["rows"])
    p = s["pipeline"]
    assert p["flow_stage"]["videos"] == 16 and p["flow_stage"]["pairs"] == 16 * 8
    assert p["reader"]["samples_per_s_read"] > 0 and p["reader"]["samples_per_s_read_augment"] > 0
    assert [r["method"] for r in p["train"]] == ["moco", "modist", "mscl"]
    assert all(r["steps_per_s"] > 0 and not r["amp"] for r in p["train"])
    text = out.read_text()
    assert "old" not in text and "flow table" in text and text.count(START) == 1
    section = text[text.index(START):text.index(END)]
    assert "No GPU was used" in section and "motionclr bench gpu --small" in section
    assert "| moco | small3d | 4x32² | 4 | no |" in section


def test_bench_gpu_refuses_cuda_without_a_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["--device", "cuda", "--no-write"]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err
