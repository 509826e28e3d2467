"""hdf5plugin is the optional `compact` extra: without it, a Blosc codec is a one-line error
naming the extra, and the built-in codecs still work (issue #14, dependencies)."""
import subprocess
import sys

import h5py
import numpy as np

from motionclr.pipeline import compact

# Blocks the import the way an environment without the package does (sys.modules None entry).
_WITHOUT = "import sys; sys.modules['hdf5plugin'] = None\n"


def _write(path, codec):
    rgb = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    flow = np.random.default_rng(1).integers(0, 255, (2, 16, 16, 2), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        compact.write_compact_video(f.create_group("v"), rgb, flow, flow_codec=codec)
    return flow


def _run(code):
    return subprocess.run([sys.executable, "-c", _WITHOUT + code], capture_output=True,
                          text=True, timeout=120)


def test_blosc_without_hdf5plugin_is_a_clear_error(tmp_path):
    flow = _write(tmp_path / "z.h5", "zstd")            # written with the plugin present
    read = (f"import h5py, numpy as np\nfrom motionclr.pipeline import compact\n"
            f"f = h5py.File({str(tmp_path / 'z.h5')!r}, 'r')\n"
            f"compact.read_flow(f['v'], np.arange(2))\n")
    res = _run(read)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].endswith(
        "need hdf5plugin: pip install 'motionclr[compact]' (or use codec lzf, gzip or none)")
    res = _run("from motionclr.pipeline import compact\ncompact.flow_filter('lz4')\n")
    assert "pip install 'motionclr[compact]'" in res.stderr
    # built-in codecs need no plugin: write and read back without it
    _write(tmp_path / "g.h5", "gzip")
    res = _run(f"import h5py, numpy as np\nfrom motionclr.pipeline import compact\n"
               f"f = h5py.File({str(tmp_path / 'g.h5')!r}, 'r')\n"
               f"print(compact.read_flow(f['v'], np.arange(2)).sum())\n"
               f"print(compact.flow_filter('lzf'))\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(flow.astype(np.int64).sum()), "{'compression':", "'lzf'}"]
    with h5py.File(tmp_path / "z.h5", "r") as f:               # with the plugin: the data
        assert np.array_equal(compact.read_flow(f["v"], np.arange(2)), flow)
