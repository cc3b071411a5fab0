"""Keys and certificates for the tests' own servers, made with the openssl command."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(key: Path, cert: Path, subject: str) -> None:
    """A new RSA key at ``key`` and a certificate for it, signed by itself, valid two days, at ``cert``."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "2", "-subj", subject],
        check=True,
        capture_output=True,
    )
