"""External programs the package runs, found once: below every other module, so that
the dataset writers need not import the pipeline to find ffmpeg."""
from __future__ import annotations

import shutil

from motionclr.errors import UserError


def ffmpeg_exe() -> str:
    """ffmpeg on PATH, else the binary bundled with imageio-ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - report why no binary was found
        raise UserError(f"no ffmpeg binary on PATH and imageio-ffmpeg failed: {e}") from e
