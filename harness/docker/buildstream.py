"""Following ``docker build``'s progress stream (the classic builder's JSON messages), apart from the SDK.

The builder announces each instruction as ``Step N/M : INSTRUCTION``, streams its output, and reports a failure as
an ``error`` message after it, not as an HTTP status; the image it built comes in an ``aux`` message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from harness.docker.interface import BuildFailed, LineSink
from harness.errors import HarnessError

TAIL = 20  # lines of a failed build's output kept for its error
_STEP_RE = re.compile(r"^Step (\d+)/\d+ : (.*)$")


def follow_build(messages: Iterator[dict[str, Any]], what: str, progress: LineSink | None) -> str:
    """The built image's id; each output line to ``progress``; an error as BuildFailed naming the step."""
    step: int | None = None
    step_text = ""
    tail: list[str] = []
    image_id = ""
    pending = ""
    for message in messages:
        if "error" in message:
            reason = str((message.get("errorDetail") or {}).get("message") or message["error"]).strip()
            at = f" at step {step} ({step_text})" if step is not None else ""
            raise BuildFailed(f"{what} failed{at}: {reason}", reason, step, step_text, tuple(tail))
        image_id = str((message.get("aux") or {}).get("ID") or image_id)
        pending += str(message.get("stream", ""))
        *lines, pending = pending.split("\n")  # output arrives in chunks, not always whole lines
        for line in filter(str.strip, lines):  # the builder writes blank lines around some steps
            header = _STEP_RE.match(line)
            if header is not None:
                step, step_text = int(header[1]), header[2].strip()
            tail = [*tail[-(TAIL - 1) :], line]
            if progress is not None:
                progress(line)
    if not image_id:
        raise HarnessError(f"{what} ended without naming the image it built; last lines:\n" + "\n".join(tail))
    return image_id
