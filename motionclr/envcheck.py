"""Which pip packages provide ``cv2``: several at once overwrite each other's files.

opencv-python, opencv-python-headless, opencv-contrib-python and
opencv-contrib-python-headless all install the same ``cv2`` directory. motionclr needs a
contrib build (TV-L1 lives in ``cv2.optflow``); mmcv/mmaction2 environments usually hold
opencv-python, and installing both leaves whichever was written last (and uninstalling one
breaks the other). The contrib builds hold every main module, so one contrib package
serves both projects.
"""
from __future__ import annotations

import importlib.metadata

CV2_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
             "opencv-contrib-python-headless")


def installed_versions(names) -> dict[str, str]:
    """name -> version of the pip packages among ``names`` that are installed."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def cv2_distributions() -> dict[str, str]:
    """Installed pip packages that provide ``cv2``: name -> version."""
    return installed_versions(CV2_DISTS)


def opencv_advice(dists: dict[str, str] | None = None) -> str | None:
    """One line of advice when the installed cv2 packages clash or lack contrib, else None."""
    dists = cv2_distributions() if dists is None else dists
    keep = "opencv-contrib-python-headless"       # motionclr's own requirement
    if set(dists) == {keep}:
        return None
    others = sorted(d for d in dists if d != keep)
    found = ", ".join(f"{d} {v}" for d, v in sorted(dists.items())) or "none"
    fix = (f"pip uninstall -y {' '.join(others)} && " if others else "") + \
        f"pip install --force-reinstall --no-deps {keep}"
    return (f"cv2 is provided by: {found}; these packages overwrite each other's cv2 and "
            f"motionclr needs {keep} (it holds every main module too): {fix}")
