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
