"""`harness ui`: a local, read-only web page over a project's run records.

The server is the standard library's ThreadingHTTPServer bound to 127.0.0.1. It serves one page and its own CSS
and JS from ``harness/ui/static/`` (nothing is fetched from elsewhere), and a JSON API the page uses:

- ``GET /api/runs[?where=EXPR]``: ``{"runs": [...], "count": N, "total": M, "warnings": [...]}``, newest
  first. ``where`` is a `harness ls --where` expression (harness.query), evaluated over the full records; a bad
  one is a 400 with the error's message and hint. Each run is the slice of its record the table needs, in the
  record's own shape (``code.commit``, ``params.x``, ``metrics.y``).
- ``GET /api/runs/<id or prefix>``: the full record.
- ``GET /api/runs/<id>/steps``: its step metrics (metrics.jsonl) as series, thinned to MAX_POINTS points each
  (harness.runs.steps).
- ``GET /api/runs/<id>/outputs[?offset=N&limit=M]``: a page of the output files the record names (all of
  them: from its outputs manifest when the record lists only the first 1,000, harness.runs.outputlist), in path
  order: ``{"run": id, "files": [...], "total": T, "offset": N, "limit": M}``, each file with its size and kind
  (image, text, file), looked up for that page only. ``limit`` is 200 unless given, at most 1,000; an offset or
  limit that is not a whole number in range is a 400 with a message and a hint.
- ``GET /api/runs/<id>/files/<path>``: one of those files, from the store by its recorded digest, with a content
  type decided by harness and a CSP that keeps any script in it from running (harness/ui/outputfiles.py).

Sorting and comparison happen in the browser over that JSON; filtering asks the server, so the text box speaks
exactly the language of `harness ls --where`. Requests whose Host header is not the loopback address are
refused, so a web page elsewhere cannot read the records through DNS rebinding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from harness.errors import HarnessError, NotFound, UsageError
from harness.runs.records import Records
from harness.storage.store import Store

HOST = "127.0.0.1"
MAX_POINTS = 2000  # per step series sent to the page: more than a chart's width in pixels

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_WHOLE = re.compile(r"[0-9]{1,13}")
MAX_OFFSET = 10**12  # past any run's file count: such an offset is an empty page
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(?:css|js|html)$")
# The page loads only its own files: an injected <script> or an external asset would be blocked even if an
# escaping bug let one through.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def list_runs(records: Records, where: str = "") -> dict[str, Any]:
    """The /api/runs document: the table slices of the runs ``where`` selects (all when it is blank).

    The slices come from the index's columns (Records.summaries), not from parsing every full record: at 10,000
    runs that is what keeps the page's first rows quick (bench/ui_paint.py)."""
    records.sync()
    warnings: list[str] = []
    if where.strip():
        from harness.runs.query import parse_where, suggest, unknown_names

        test = parse_where(where)
        everything = records.list()
        total = len(everything)
        ids = [str(r["id"]) for r in everything if test(r)]
        for name in unknown_names(test, everything):
            close = suggest(name, everything)
            warnings.append(f"no run has {name}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        chosen = records.summaries(ids=ids)
    else:
        chosen = records.summaries()
        total = len(chosen)
    return {"runs": chosen, "count": len(chosen), "total": total, "warnings": warnings}


def page_bounds(query: Mapping[str, list[str]]) -> tuple[int, int]:
    """``offset`` and ``limit`` of an /api/runs/<id>/outputs request (0 and outputfiles.PAGE when absent);
    UsageError for one that is not a whole number, a limit of 0 or above MAX_PAGE."""
    from harness.ui.outputfiles import MAX_PAGE, PAGE

    bounds = {"offset": 0, "limit": PAGE}
    for name, low, high in (("offset", 0, MAX_OFFSET), ("limit", 1, MAX_PAGE)):
        text = query.get(name, [""])[0]
        if not text:
            continue
        value = int(text) if _WHOLE.fullmatch(text) else None
        if value is None or not low <= value <= high:
            raise UsageError(
                f"{name} must be a whole number from {low} to {high:,}, not {text!r}",
                f"e.g. ?offset=0&limit={PAGE}: the first {PAGE} files in path order",
            )
        bounds[name] = value
    return bounds["offset"], bounds["limit"]


class UiServer(ThreadingHTTPServer):
    """The UI's HTTP server over one store's records. ``url`` is where it listens."""

    daemon_threads = True  # Ctrl-C must not wait for a browser's keep-alive connection to close

    def __init__(self, records: Records, port: int = 0, store: Store | None = None) -> None:
        self.records = records
        # the project store's objects, beside runs/ (harness.paths.Layout)
        self.store = store or Store(records.runs_dir.parent / "objects")
        super().__init__((HOST, port), _Handler)  # loopback only: the records are not for the network

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def allowed_hosts(self) -> set[str]:
        return {f"{HOST}:{self.port}", f"localhost:{self.port}"}


def make_server(records: Records, port: int = 0, store: Store | None = None) -> UiServer:
    """A server bound to 127.0.0.1 (port 0: a free one); call ``serve_forever()`` and ``server_close()``."""
    try:
        return UiServer(records, port, store)
    except OSError as exc:
        raise HarnessError(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}",
            "choose another --port, or --port 0 for a free one",
        ) from None


class _Handler(BaseHTTPRequestHandler):
    server: UiServer
    server_version = "harness-ui"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        if self.headers.get("Host", "") not in self.server.allowed_hosts():
            self._send_json({"error": "Forbidden", "message": "only http://127.0.0.1 may use this server"}, 403)
            return
        url = urlsplit(self.path)
        path = unquote(url.path)
        if path in ("/", "/index.html"):
            self._send_static("index.html")
        elif path.startswith("/static/"):
            self._send_static(path.removeprefix("/static/"))
        elif path == "/api/runs":
            self._api_runs(parse_qs(url.query).get("where", [""])[0])
        elif path.startswith("/api/runs/"):
            self._api_run(path.removeprefix("/api/runs/"), parse_qs(url.query))
        else:
            self._send_json({"error": "NotFound", "message": f"no page {path}"}, 404)

    def _api_runs(self, where: str) -> None:
        from harness.runs.query import QueryError

        try:
            document = list_runs(self.server.records, where)
        except QueryError as exc:
            self._send_json(exc.to_dict(), 400)
            return
        except HarnessError as exc:
            self._send_json(exc.to_dict(), 500)
            return
        self._send_json(document)

    def _api_run(self, rest: str, query: Mapping[str, list[str]]) -> None:
        ref, _, part = rest.partition("/")
        if not ref or (part not in ("", "steps", "outputs") and not part.startswith("files/")):
            self._send_json({"error": "NotFound", "message": f"no page /api/runs/{rest}"}, 404)
            return
        try:
            record = self.server.records.read(ref)
            if part.startswith("files/"):
                self._send_output(record, part.removeprefix("files/"))
            elif part == "steps":
                from harness.runs.steps import read_steps

                self._send_json(read_steps(record, self.server.store, MAX_POINTS).to_dict())
            elif part == "outputs":
                from harness.ui.outputfiles import list_outputs

                offset, limit = page_bounds(query)
                outputs_dir = self.server.records.paths(str(record["id"])).outputs
                page = list_outputs(record, self.server.store, outputs_dir, offset, limit)
                self._send_json({"run": record["id"], **page.to_dict()})
            else:
                self._send_json(record)
        except HarnessError as exc:
            status = 400 if isinstance(exc, UsageError) else 404 if isinstance(exc, NotFound) else 500
            self._send_json(exc.to_dict(), status)

    def _send_output(self, record: Mapping[str, Any], path: str) -> None:
        from harness.ui.outputfiles import FILE_CSP, disposition, open_output, read_chunks

        outputs_dir = self.server.records.paths(str(record["id"])).outputs
        found, source = open_output(record, self.server.store, outputs_dir, path)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", found.content_type)
        self.send_header("Content-Length", str(found.size))
        self.send_header("Content-Disposition", disposition(path))
        # an output never changes under its digest, but a private store's files should not linger in a cache
        self.send_header("Cache-Control", "private, max-age=3600")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", FILE_CSP)
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.end_headers()
        for chunk in read_chunks(source):
            self.wfile.write(chunk)

    def _send_static(self, name: str) -> None:
        if not _STATIC_NAME.match(name):
            self._send_json({"error": "NotFound", "message": f"no file {name}"}, 404)
            return
        resource = resources.files("harness.ui").joinpath("static", name)
        if not resource.is_file():
            self._send_json({"error": "NotFound", "message": f"no file {name}"}, 404)
            return
        suffix = name[name.rindex(".") :]
        self._send(resource.read_bytes(), _STATIC_TYPES[suffix])

    def _send_json(self, value: Any, status: int = 200) -> None:
        self._send(json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), "application/json", status)

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(HTTPStatus(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL, not a line per request."""
