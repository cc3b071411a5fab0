"""Plots: a run's step charts and image outputs in `harness ui`, several runs overlaid with a param-vs-metric
chart, output files served safely, and `harness plot` files. The runs are real (the probe project, real git and
Docker): three runs of a small training script at three learning rates. Charts are checked in real pixels of
headless Chromium's screenshots (Debian's chromium + chromium-driver, Selenium) and of the written files."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.env.environment import Environment
from harness.env.lockfile import Lock
from harness.ui.server import UiServer
from harness.ui.svgchart import PALETTE
from tests import test_ui
from tests.projects import cli_env, commit_all, harness, make_probe_project
from tests.test_ui import ARTIFACTS, _get, _open_table, _row, _wait
from tests.uiserver import serving

pytestmark = pytest.mark.docker
browser = test_ui.browser  # the module-scoped headless Chromium

# Writes 40 steps of loss and acc (faster for a larger lr), a PNG (by hand: stdlib zlib), an SVG whose script
# would mark the document if it ever ran, a text file, an HTML file and a binary one.
TRAIN = r"""
import json, math, os, pathlib, struct, zlib

params = json.load(open(os.environ["HARNESS_PARAMS"]))
out = pathlib.Path(os.environ["HARNESS_OUTPUTS"])
lr = float(params["lr"])
with open(out / "metrics.jsonl", "w") as fh:
    for step in range(40):
        loss, acc = math.exp(-lr * step * 20) + lr, 1 - math.exp(-lr * step * 10)
        fh.write(json.dumps({"step": step, "loss": loss, "acc": acc}) + "\n")

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

rows = b"".join(b"\x00" + bytes((200, 40, 40)) * 64 for _ in range(32))
header = struct.pack(">IIBBBBB", 64, 32, 8, 2, 0, 0, 0)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
(out / "figures").mkdir()
(out / "figures" / "red.png").write_bytes(png)
(out / "figures" / "green.svg").write_text(
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="32"><rect width="64" height="32" fill="#22aa22"/>'
    '<script>document.documentElement.setAttribute("data-ran", "yes")</script></svg>'
)
(out / "notes.txt").write_text("lr was %s\n" % lr)
(out / "report.html").write_text('<script>document.title = "ran"</script><b>bold</b>')
(out / "weights.bin").write_bytes(bytes(range(256)))
"""
RATES = {"0.1": "adam", "0.01": "sgd", "0.001": "adam"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_env: Environment, tiny_lock: Lock) -> tuple[Path, list[str]]:
    """The probe project with train.py, run at lr 0.1, 0.01 and 0.001 (opt adam, sgd, adam): (root, run ids)."""
    root = make_probe_project(tmp_path_factory.mktemp("plots") / "sweep", tiny_lock)
    (root / "train.py").write_text(TRAIN)
    commit_all(root, "train")
    ids = []
    for lr, opt in RATES.items():
        result = harness(root, "run", "-p", f"lr={lr}", "-p", f"opt={opt}", "--", "python", "train.py")
        assert result.returncode == 0, result.stderr
        ids.append(result.stderr.split("harness: run ", 1)[1].split()[0])
    return root, ids


@pytest.fixture(scope="module")
def server(sweep: tuple[Path, list[str]]) -> Iterator[UiServer]:
    from harness.runs.history import project_records

    with serving(project_records(sweep[0])) as ui:
        yield ui


def _expected_loss(lr: float, step: int) -> float:
    return math.exp(-lr * step * 20) + lr


# -- the API ------------------------------------------------------------------------------------------------------
def test_steps_are_served_as_series_from_the_recorded_object(server: UiServer, sweep: Any) -> None:
    run_id = sweep[1][0]
    status, _, body = _get(server.url + f"api/runs/{run_id}/steps")
    steps = json.loads(body)
    assert status == 200 and sorted(steps["series"]) == ["acc", "loss"] and steps["lines"] == 40
    loss = steps["series"]["loss"]
    assert loss["x"] == list(range(40)) and loss["y"] == [_expected_loss(0.1, s) for s in range(40)]
    record = json.loads(_get(server.url + f"api/runs/{run_id}")[2])
    assert steps["source"] == record["metrics_steps_object"] == record["outputs"]["files"]["metrics.jsonl"]


def test_outputs_are_listed_and_served_by_digest_with_safe_types(server: UiServer, sweep: Any) -> None:
    run_id = sweep[1][0]
    listed = json.loads(_get(server.url + f"api/runs/{run_id}/outputs")[2])["files"]
    by_path = {f["path"]: f for f in listed}
    assert by_path["figures/red.png"]["kind"] == "image" and by_path["figures/green.svg"]["kind"] == "image"
    assert by_path["notes.txt"]["kind"] == "text" and by_path["weights.bin"]["kind"] == "file"
    assert by_path["weights.bin"]["size"] == 256

    def served(path: str) -> tuple[int, dict[str, str], bytes]:
        return _get(server.url + f"api/runs/{run_id}/files/{path}")

    status, headers, body = served("figures/red.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    import hashlib

    assert hashlib.sha256(body).hexdigest() == by_path["figures/red.png"]["sha256"]
    status, headers, body = served("figures/green.svg")
    assert headers["Content-Type"] == "image/svg+xml" and b"<script>" in body
    csp = headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    # HTML is text here: shown as its source, never rendered.
    status, headers, _ = served("report.html")
    assert headers["Content-Type"] == "text/plain; charset=utf-8" and headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = served("weights.bin")
    assert headers["Content-Type"] == "application/octet-stream" and headers["Content-Disposition"].startswith(
        "attachment"
    )
    # Only files the record names: no path into the run directory, the store or anywhere else.
    for path in ("../record.json", "%2e%2e/record.json", "figures/../notes.txt", "/etc/passwd", "figures", "log.txt"):
        assert served(path)[0] == 404, path
    assert _get(server.url + f"api/runs/{run_id}/nothing")[0] == 404


# -- the page -----------------------------------------------------------------------------------------------------
def _shot(driver: Any, element: Any, name: str) -> Any:
    """The screenshot's pixels inside ``element`` (an RGB PIL image), after scrolling it into view; the whole
    viewport goes to tests/artifacts/``name``."""
    from PIL import Image

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.x, r.y, r.width, r.height]", element
    )
    ratio = driver.execute_script("return window.devicePixelRatio")
    png = driver.get_screenshot_as_png()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(png)
    x, y, w, h = (round(v * ratio) for v in rect)
    return Image.open(io.BytesIO(png)).crop((x, y, x + w, y + h))


def _pixels(image: Any) -> Counter:
    """How many pixels of each RGB colour ``image`` has."""
    data = image.convert("RGB").tobytes()
    return Counter(zip(data[0::3], data[1::3], data[2::3], strict=True))


def _near(counts: Counter, colour: str, tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` of ``colour`` on each channel (antialiasing shifts a line's pixels)."""
    target = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(n for rgb, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(rgb, target, strict=True)))


@pytest.mark.browser
def test_run_page_draws_its_step_charts_and_shows_its_images(browser: Any, server: UiServer, sweep: Any) -> None:
    from selenium.webdriver.common.by import By

    run_id = sweep[1][0]
    browser.get(server.url + f"#/run/{run_id}")
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelector('[data-section=steps]')?.dataset.state") == "ready",
    )
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelector('[data-section=outputs]')?.dataset.state") == "ready",
    )
    charts = browser.find_elements(By.CSS_SELECTOR, '#view-run [data-section="steps"] figure.chart')
    assert [c.get_attribute("data-metric") for c in charts] == ["acc", "loss"]
    svg = charts[1].find_element(By.TAG_NAME, "svg")
    assert len(svg.find_elements(By.CSS_SELECTOR, "polyline.series")) == 1
    pixels = _pixels(_shot(browser, svg, "ui-run-steps.png"))
    # not blank: the frame, grid, labels and the curve in the first palette colour
    assert len(pixels) > 20 and sum(n for rgb, n in pixels.items() if rgb != (255, 255, 255)) > 2000
    assert _near(pixels, PALETTE[0]) > 150, "the loss curve is not drawn"

    # Images inline (decoded: a broken one has no natural width); the SVG's script never ran.
    images = {
        i.get_attribute("data-path"): i for i in browser.find_elements(By.CSS_SELECTOR, "#view-run figure.image img")
    }
    assert set(images) == {"figures/red.png", "figures/green.svg"}
    for path, img in images.items():
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 64, path
    red = _pixels(_shot(browser, images["figures/red.png"], "ui-run-images.png"))
    assert _near(red, "#c82828", 4) > 1000
    # Other outputs are listed with size and digest, text opens in the browser, the rest downloads.
    rows = {r.get_attribute("data-path"): r for r in browser.find_elements(By.CSS_SELECTOR, "table.outputs tbody tr")}
    assert "256 B" in rows["weights.bin"].text and rows["weights.bin"].find_element(By.TAG_NAME, "a").text == "download"
    assert rows["notes.txt"].find_element(By.TAG_NAME, "a").text == "open"

    # Opened on its own, the SVG is sandboxed: its script does not run; HTML output is shown as text.
    browser.get(server.url + f"api/runs/{run_id}/files/figures/green.svg")
    assert browser.execute_script("return document.documentElement.getAttribute('data-ran')") is None
    browser.get(server.url + f"api/runs/{run_id}/files/report.html")
    assert browser.execute_script("return document.contentType") == "text/plain"
    assert "<script>" in browser.find_element(By.TAG_NAME, "body").text and browser.title != "ran"


@pytest.mark.browser
def test_selected_runs_overlay_one_series_each_and_plot_a_param_against_a_metric(
    browser: Any, server: UiServer, sweep: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ids = sweep[1]
    _open_table(browser, server.url)
    for run_id in ids:
        _row(browser, run_id).find_element(By.CSS_SELECTOR, "input.pick").click()
    button = browser.find_element(By.ID, "plot")
    assert button.text == "Plot selected (3)"
    button.click()
    _wait(browser, lambda d: d.execute_script("return document.querySelector('#view-plot').dataset.state") == "ready")

    charts = browser.find_elements(By.CSS_SELECTOR, '#view-plot [data-section="overlay"] figure.chart')
    assert [c.get_attribute("data-metric") for c in charts] == ["acc", "loss"]
    loss = charts[1]
    series = loss.find_elements(By.CSS_SELECTOR, "polyline.series")
    strokes = [s.get_attribute("stroke") for s in series]
    assert len(series) == 3 and len(set(strokes)) == 3
    assert sorted(s.get_attribute("data-run") for s in series) == sorted(ids)
    # In pixels: each run's colour is on the screen inside the chart.
    pixels = _pixels(_shot(browser, loss.find_element(By.TAG_NAME, "svg"), "ui-plot-overlay.png"))
    for colour in strokes:
        assert _near(pixels, colour) > 100, f"no pixels of {colour}"
    # The legend names each run with the params that differ (lr, opt), not those that are the same (scale).
    legend = [li.text for li in loss.find_elements(By.CSS_SELECTOR, "ul.legend li")]
    assert len(legend) == 3 and all("opt=" in t and "lr=" in t and "scale" not in t for t in legend)
    assert any(f"{ids[2]} (lr=0.001, opt=adam)" in t for t in legend)

    # Which lr was best? The scatter has one point per run; the lowest final loss is lr=0.01's (0.1 levels off
    # at its own floor, 0.001 has not got there in 40 steps).
    Select(browser.find_element(By.ID, "scatter-param")).select_by_value("lr")
    Select(browser.find_element(By.ID, "scatter-metric")).select_by_value("loss")
    scatter = browser.find_element(By.CSS_SELECTOR, '#view-plot [data-section="scatter"]')
    assert len(scatter.find_elements(By.CSS_SELECTOR, "circle.point")) == 3
    best = scatter.find_element(By.CSS_SELECTOR, "p.best").text
    assert best.startswith(f"lowest loss: {_expected_loss(0.01, 39)} at lr=0.01 (run {ids[1]})"), best
    dots = _pixels(_shot(browser, scatter.find_element(By.TAG_NAME, "svg"), "ui-plot-scatter.png"))
    assert all(_near(dots, colour) > 20 for colour in strokes)
    # A categorical param is grouped: one band and one mean per value.
    Select(browser.find_element(By.ID, "scatter-param")).select_by_value("opt")
    assert len(scatter.find_elements(By.CSS_SELECTOR, "line.group-mean")) == 2
    ticks = [t.text for t in scatter.find_elements(By.CSS_SELECTOR, "g.axes text")]
    assert "adam" in ticks and "sgd" in ticks


# -- harness plot -------------------------------------------------------------------------------------------------
def test_harness_plot_writes_an_svg_with_one_series_per_run(sweep: Any, tmp_path: Path) -> None:
    root, ids = sweep
    out = tmp_path / "loss.svg"
    result = harness(root, "plot", *ids, "--metric", "loss", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["run"] for s in report["series"]] == ids and all(s["points"] == 40 for s in report["series"])
    tree = ET.parse(out)  # well-formed XML
    ns = {"svg": "http://www.w3.org/2000/svg"}
    lines = tree.getroot().findall(".//svg:polyline[@class='series']", ns)
    assert [line.get("data-run") for line in lines] == ids
    assert [line.get("stroke") for line in lines] == list(PALETTE[:3])
    assert all(len(line.get("points", "").split()) == 40 for line in lines)
    texts = [t.text or "" for t in tree.getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.endswith(f"{ids[1]} (lr=0.01, opt=sgd)") for t in texts)
    assert not tree.getroot().findall(".//svg:script", ns)


def test_harness_plot_writes_a_png_with_one_colour_per_run(sweep: Any, tmp_path: Path) -> None:
    from PIL import Image

    root, ids = sweep
    out = tmp_path / "acc.png"
    result = harness(root, "plot", *ids, "-m", "acc", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: acc of 3 run(s)" in result.stdout
    image = Image.open(out)
    assert image.format == "PNG" and image.width > 400 and image.height > 300
    pixels = _pixels(image)
    for colour in PALETTE[:3]:
        assert _near(pixels, colour) > 200, f"no line in {colour}"
    assert _near(pixels, PALETTE[3]) < 20  # and no fourth series


def test_harness_plot_says_what_is_missing(sweep: Any, tmp_path: Path) -> None:
    root, ids = sweep
    result = harness(root, "plot", *ids, "-o", str(tmp_path / "x.svg"))
    assert result.returncode == 2 and "name one with --metric" in result.stderr and "acc, loss" in result.stderr
    result = harness(root, "plot", ids[0], "-m", "los", "-o", str(tmp_path / "x.svg"))
    assert result.returncode == 2 and f"run {ids[0]} has no step metric 'los'" in result.stderr
    result = harness(root, "plot", ids[0], "-m", "loss", "-o", str(tmp_path / "x.pdf"))
    assert result.returncode == 2 and "FILE.svg" in result.stderr
    assert not (tmp_path / "x.svg").exists() and not (tmp_path / "x.pdf").exists()
    # Without matplotlib a PNG is a clear error naming what to install (the module is blocked in that process).
    blocked = (
        "import sys; sys.modules['matplotlib'] = None; sys.argv = ['harness'] + sys.argv[1:];"
        "from harness.cli.main import main; sys.exit(main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked, "plot", ids[0], "-m", "loss", "-o", str(tmp_path / "x.png")],
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 100, result.stderr
    assert "writing a PNG needs matplotlib" in result.stderr and "pip install 'harness[plot]'" in result.stderr
    assert not (tmp_path / "x.png").exists()
    assert os.listdir(tmp_path) == []
