"""`harness ui`'s server on a free loopback port, in a thread, for the UI tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harness.runs.records import Records
from harness.ui.server import UiServer, make_server


@contextmanager
def serving(records: Records) -> Iterator[UiServer]:
    ui = make_server(records, port=0)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        yield ui
    finally:
        ui.shutdown()
        ui.server_close()
        thread.join(5)
