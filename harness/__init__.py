"""harness: reproducible data-science and ML runs by construction."""

__version__ = "0.1.0"
