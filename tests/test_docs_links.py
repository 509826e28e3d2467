"""Every repository path that README.md and docs/*.md cite exists in the repository (issue #14,
item 10): docs must not point at files that do not ship, such as the team's shared notes."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = {"motionclr", "configs", "docs", "tests", "Makefile", "README.md", "setup.cfg",
       "pyproject.toml"}
SOURCE = re.compile(r"^[\w./-]+\.(?:py|md|ya?ml|cfg|toml)$")
# Files of other projects, cited by what they are; the line must name the project.
EXTERNAL = {"opencv_contrib/modules/optflow/src/tvl1flow.cpp": "OpenCV contrib",
            "references/optical_flow/utils.py": "torchvision",
            # the authors' public code of the methods (docs/methods.md, docs/motion_index.md)
            "mmaction/models/recognizers/mscl.py": "MSCL",
            "mmaction/models/heads/local_cl_head.py": "MSCL",
            "configs/recognition/moco/mscl_r18_cosm_lr2e-2.py": "MSCL",
            "tools/ssl/generate_mcl_samples.py": "MSCL",
            "sts/motion_sts.py": "MCL",
            "dataset/video_dataset.py": "MCL"}
# Names of files the code writes into run and stage directories, not repository files.
WRITTEN = {"config.yaml", "report.md"}
CITE = re.compile(r"`([^`\s]+)`|\]\(([^)\s]+)\)")


def cited_paths():
    """(doc, line number, line, path) for every token that names a repository file."""
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in CITE.finditer(line):
                tok = (m.group(1) or m.group(2)).split("::")[0].split("#")[0]
                if not tok or tok.startswith(("http:", "https:")) or re.search(r"[<>*{}…$]", tok):
                    continue
                first = tok.split("/")[0]
                if (tok.startswith(("../", "shared/", "reference/")) or first in TOP
                        or SOURCE.match(tok)):
                    yield doc, n, line, tok


def _exists(doc: Path, tok: str) -> bool:
    if tok.startswith(("../", "shared/")):
        return False                        # outside the repository: never shipped
    for base in (ROOT, doc.parent, ROOT / "motionclr"):
        if (base / tok).exists():
            return True
    if "/" not in tok:                      # a bare module/test/doc name: anywhere in the repo
        return any(ROOT.glob(f"motionclr/**/{tok}")) or any(ROOT.glob(f"tests/{tok}")) \
            or (ROOT / "docs" / tok).exists()
    return False


def test_cited_repository_paths_exist():
    cited = list(cited_paths())
    assert len(cited) > 50                  # the scan finds the docs' many code references
    missing = []
    for doc, n, line, tok in cited:
        if tok in EXTERNAL:
            assert EXTERNAL[tok] in line, f"{doc.name}:{n}: {tok} without naming its project"
            continue
        if tok in WRITTEN or _exists(doc, tok):
            continue
        missing.append(f"{doc.relative_to(ROOT)}:{n}: {tok}")
    assert not missing, "docs cite files that do not ship:\n" + "\n".join(missing)


def test_the_scan_flags_what_it_should(tmp_path):
    fake = ROOT / "docs" / "x.md"
    assert not _exists(fake, "../shared/DESIGN.md") and not _exists(fake, "shared/a.md")
    assert not _exists(fake, "reference/methods.md")
    assert _exists(fake, "flow/opencv.py") and _exists(fake, "test_decode.py")
    assert _exists(fake, "methods.md") and not _exists(fake, "eval.md")
