"""What every benchmark does before it times harness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def compile_harness() -> None:
    """Byte-compile the harness package, as `pip install` does for an installed package.

    Timed commands then load harness from .pyc files, as users run it. Without this, a machine that sets
    PYTHONDONTWRITEBYTECODE=1 (these do) makes every timed start of an editable checkout compile harness from
    source (about 25 ms per start, by cProfile), while the pip-installed tools compared with it (DVC, MLflow)
    load their compiled files."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "harness")], check=True)


def release_tree(rev: str, target: Path) -> Path:
    """harness as it was at ``rev`` (git archive into ``target``, once), byte-compiled like this checkout; run it
    with PYTHONPATH=<target> so that it and this checkout share the interpreter and the libraries."""
    if not (target / "harness" / "__init__.py").is_file():
        target.mkdir(parents=True, exist_ok=True)
        # images/ too: before the package layout, harness/recipes was a symlink to the repository's images/
        listed = subprocess.run(["git", "ls-tree", "--name-only", rev], cwd=REPO, check=True, capture_output=True)
        paths = [p for p in ("harness", "images") if p in listed.stdout.decode().split()]
        archive = subprocess.run(["git", "archive", rev, *paths], cwd=REPO, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(target / "harness")], check=True)
    return target
