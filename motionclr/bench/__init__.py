"""Benchmarks behind `motionclr bench <name>`: each module has ``main(argv)`` and writes its
own section of docs/benchmarks.md."""
from __future__ import annotations

from pathlib import Path


def write_section(path: Path, body: str, name: str) -> None:
    """Replace the text between ``<!-- bench:<name>:start/end -->`` in ``path``; append the
    block when the markers are missing (and create the file)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    path = Path(path)
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in text and end in text and text.index(start) < text.index(end):
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
