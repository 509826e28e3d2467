"""External programs the package runs, found once: below every other module, so that
the dataset writers need not import the pipeline to find ffmpeg."""
from __future__ import annotations

import functools
import shutil

from motionclr.errors import EnvironmentFailure


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """ffmpeg on PATH, else the binary bundled with imageio-ffmpeg. None at all is the
    machine's fault, not a video's: an ``EnvironmentFailure`` (the flow stage stops)."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - report why no binary was found
        raise EnvironmentFailure(f"no ffmpeg binary on PATH and imageio-ffmpeg failed: {e}") from e
