"""Batched clip reads reuse freed heap memory instead of faulting in fresh pages."""
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import motionclr.storage.frame_reader as fr
    from motionclr.storage import FrameReader
    if sys.argv[2] == "off":
        fr.keep_freed_memory = lambda: False  # the control: glibc's default thresholds
    import h5py
    f = h5py.File(sys.argv[1], "r")
    reader = FrameReader(sys.argv[1])
    get = lambda: f["rgb"]

    def batch(k):  # what ShardClipDataset.__getitems__ keeps alive: 8 clips at once
        return [reader.read("rgb", np.arange(16) + (k + j) % 32, get) for j in range(8)]

    for k in range(3):
        batch(k)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k in range(20):
        batch(k)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / (20 * 8))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux")
def test_batched_reads_do_not_fault_in_fresh_pages(tmp_path):
    path = tmp_path / "frames.h5"
    frame = (128, 170, 3)  # a UCF101-size frame at short side 128: 16 frames = 1 MiB
    with h5py.File(path, "w") as f:
        f.create_dataset("rgb", data=np.random.default_rng(0).integers(
            0, 256, (48,) + frame, dtype=np.uint8), chunks=(1,) + frame)
    pages = 16 * int(np.prod(frame)) / 4096  # what a fresh buffer per clip faults in

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(path), mode],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return float(out.stdout.strip().splitlines()[-1])

    kept, default = faults("on"), faults("off")
    assert default > 0.5 * pages, (default, pages)  # the control shows the problem exists
    assert kept < 0.05 * pages, (kept, pages)
