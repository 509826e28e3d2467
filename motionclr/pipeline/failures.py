"""Whose fault is an exception raised while one video is processed: the video's or the
machine's (docs/reliability.md, "Two kinds of error").

A video's error (undecodable, too short, hostile, timed out, a shape the engine refuses) is
recorded for that video and the run goes on. An environment error (driver, out of memory,
a missing import or checkpoint, permissions, disk) would fail every video the same way:
the run stops with one line, marks nothing failed and caches nothing.
"""
from __future__ import annotations

from collections import Counter

from motionclr.errors import EnvironmentFailure
from motionclr.pipeline.decode import DecodeError

# Messages of RuntimeErrors that come from the accelerator stack, not from the data.
_ENV_TEXTS = ("CUDA", "NVIDIA", "cuDNN", "CUBLAS", "cublas", "NCCL", "out of memory",
              "driver", "HIP error", "MPS backend")


def is_environment_error(e: BaseException) -> bool:
    if isinstance(e, EnvironmentFailure):
        return True
    if isinstance(e, DecodeError):
        return False
    if isinstance(e, (MemoryError, ImportError, OSError)):
        # OSError: a missing checkpoint, permissions, disk, I/O. A missing *video* is
        # reported as a DecodeError before anything else reads it.
        return True
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return True
    return isinstance(e, RuntimeError) and any(t in str(e) for t in _ENV_TEXTS)


def environment_failure(e: BaseException, video_id: str) -> EnvironmentFailure:
    """One line for the CLI: what failed, on which video, and that nothing was recorded."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    what = msg if isinstance(e, EnvironmentFailure) else f"{type(e).__name__}: {msg}"
    return EnvironmentFailure(f"{what} (environment error while processing {video_id}; no "
                              "video was marked failed and nothing was cached — fix it and "
                              "rerun)")


def reason_kind(reason: str) -> str:
    """A failure reason without its video-specific details, for counting top reasons."""
    head = reason.split(" (")[0].split(": /")[0]
    return head[:80]


def top_reasons(failed: list[dict], n: int = 3) -> list[tuple[str, int]]:
    return Counter(reason_kind(f.get("reason", "")) for f in failed).most_common(n)
