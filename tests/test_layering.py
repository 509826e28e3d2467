"""The package's layers, read from the source (every import, function-level ones included).

- ``motionclr.storage`` (the shard format) is the bottom: it imports only ``errors`` and ``atomic``.
- ``datasets``, ``flow`` and ``train`` never reach ``pipeline`` or ``eval``, directly or
  through anything they import (``motionclr.pretrain`` and the CLI join them).
"""
import ast
from pathlib import Path

import motionclr

PKG = Path(motionclr.__file__).parent


def _module_of(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _exists(name: str) -> bool:
    p = PKG.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """motionclr modules that ``source`` (module ``module``) imports, anywhere in it; a
    module also imports the packages above it (their ``__init__`` runs first)."""
    out = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(base[:len(base) - node.level + 1] + ([mod] if mod else []))
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for n in names:
            if n.split(".")[0] != "motionclr":
                continue
            while n and not _exists(n):
                n = n.rpartition(".")[0]
            parts = n.split(".")
            out.update(".".join(parts[:k]) for k in range(2, len(parts) + 1))
    return out


def graph() -> dict[str, set[str]]:
    g = {}
    for p in sorted(PKG.rglob("*.py")):
        m = _module_of(p)
        g[m] = imports_of(p.read_text(), m, p.name == "__init__.py") - {m}
        g[m].update(".".join(m.split(".")[:k]) for k in range(2, len(m.split("."))))
    return g


def reach(g, start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, transitively, with one import chain to it."""
    seen, todo = {start: [start]}, [start]
    while todo:
        m = todo.pop()
        for n in sorted(g.get(m, ())):
            if n not in seen:
                seen[n] = seen[m] + [n]
                todo.append(n)
    return seen


def _in(m: str, layer: str) -> bool:
    return m == layer or m.startswith(layer + ".")


def violations(g, lower: tuple, forbidden: tuple) -> list[str]:
    bad = []
    for m in g:
        if any(_in(m, lo) for lo in lower):
            for n, chain in reach(g, m).items():
                if any(_in(n, f) for f in forbidden):
                    bad.append(" -> ".join(chain))
    return bad


def test_the_checker_sees_imports_anywhere():
    src = ("import os\nfrom motionclr.storage import shards\n"
           "def f():\n    from motionclr.eval.knn import knn_accuracy\n"
           "class A:\n    def g(self):\n        import motionclr.pipeline.cache\n"
           "from .samplers import RandomClip\n")
    got = imports_of(src, "motionclr.datasets.x")
    assert {"motionclr.storage.shards", "motionclr.eval.knn", "motionclr.pipeline.cache",
            "motionclr.datasets.samplers", "motionclr.eval"} <= got
    g = {"motionclr.datasets.x": got, "motionclr.eval.knn": {"motionclr.train.loop"}}
    assert violations(g, ("motionclr.datasets",), ("motionclr.pipeline",))


def test_datasets_flow_train_never_reach_pipeline_or_eval():
    g = graph()
    # Not vacuous: the scan found the package and the edges it must have.
    assert "motionclr.storage.shards" in g["motionclr.datasets.shard_dataset"] or \
        "motionclr.storage" in g["motionclr.datasets.shard_dataset"]
    assert "motionclr.storage" in g["motionclr.pipeline.flow_stage"]
    assert "motionclr.pipeline.flow_stage" in reach(g, "motionclr.pretrain")
    assert sum(_in(m, "motionclr.train") for m in g) > 10
    bad = violations(g, ("motionclr.datasets", "motionclr.flow", "motionclr.train"),
                     ("motionclr.pipeline", "motionclr.eval"))
    assert not bad, "\n".join(bad)


def test_storage_is_the_bottom_layer():
    g = graph()
    assert "motionclr.storage.checksums" in reach(g, "motionclr.storage.shards")
    outside = [" -> ".join(c) for m in g if _in(m, "motionclr.storage")
               for n, c in reach(g, m).items()
               if not (_in(n, "motionclr.storage") or n in ("motionclr", "motionclr.errors", "motionclr.atomic"))]
    assert not outside, "\n".join(outside)
