"""`harness ui`: the JSON API over real records, the CLI's start and Ctrl-C, and the page itself in headless
Chromium (Debian's chromium + chromium-driver, driven by Selenium). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.runs.records import SCHEMA, Records
from harness.ui.server import UiServer, make_server
from tests.projects import cli_env
from tests.uiserver import serving

ARTIFACTS = Path(__file__).parent / "artifacts"
XSS_NAME = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
WHERE = 'metrics.rmse_test < 40 and params.model == "linear_regression"'


def _record(run_id: str, n: int, name: str, params: dict[str, Any], metrics: dict[str, Any], **extra: Any) -> dict:
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "id": run_id,
        "name": name,
        "status": "succeeded",
        "exit_code": 0,
        "started_at": f"2026-01-0{n}T10:00:00.000Z",
        "finished_at": f"2026-01-0{n}T10:01:00.000Z",
        "duration_s": 60.0,
        "command": ["python", "train.py"],
        "params": params,
        "params_sources": {k: "config:" + str(params["model"]) if k == "model" else "override" for k in params},
        "configs": [params["model"]],
        "code": {"commit": f"{n}" * 40, "tree": "t" * 40, "dirty": False, "branch": "main", "subject": "train"},
        "environment": {
            "image_id": "sha256:" + "e" * 64,
            "python": "3.11.2",
            "packages": [{"name": "numpy", "version": "1.26.4", "sha256": "a" * 64}],
        },
        "data": {"snapshot": "d" * 64, "files": 3, "bytes": 12345},
        "outputs": {"files": {"model.json": f"{n}" * 64, "metrics.json": "b" * 64}},
        "metrics": metrics,
        "host": {"os": "Linux", "cpu": "test cpu"},
    }
    record.update(extra)
    return record


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Records, dict[str, str]]:
    """Six runs: baseline, three linear regressions (one dirty), one failed, one with markup in its name."""
    records = Records(tmp_path / ".harness" / "runs", tmp_path / ".harness" / "index.sqlite")
    specs: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
        ("base", "bikes+baseline", {"model": "baseline"}, {"rmse_test": 55.2, "rmse_train": 50.1}, {}),
        ("lr24", "bikes+linear_regression", {"model": "linear_regression", "lags": 24}, {"rmse_test": 38.5}, {}),
        ("lr48", "bikes+linear_regression", {"model": "linear_regression", "lags": 48}, {"rmse_test": 35.1}, {}),
        ("dirty", "bikes+linear_regression", {"model": "linear_regression", "lags": 12}, {"rmse_test": 41.0}, {}),
        ("failed", "bikes+linear_regression", {"model": "linear_regression", "lags": 96}, {}, {}),
        ("xss", XSS_NAME, {"model": "ridge", "alpha": 0.5}, {"rmse_test": 39.9, "by_season": {"summer": 30.5}}, {}),
    ]
    ids: dict[str, str] = {}
    for n, (label, name, params, metrics, extra) in enumerate(specs, start=1):
        run_id = records.allocate().id
        ids[label] = run_id
        record = _record(run_id, n, name, params, metrics, **extra)
        if label == "dirty":
            record["code"] |= {"dirty": True, "changes": [{"status": "M", "path": "train.py"}], "diff": "f" * 64}
        if label == "failed":
            record |= {"status": "failed", "exit_code": 1}
        records.write(record)
    return records, ids


@pytest.fixture()
def server(runs: tuple[Records, dict[str, str]]) -> Iterator[UiServer]:
    with serving(runs[0]) as ui:
        yield ui


@pytest.fixture()
def many(tmp_path: Path) -> tuple[Records, list[str]]:
    """Three runs of 1,500 outputs each (parts/f00000.txt ...), more than a page and more than the 1,000 a record
    lists: the second differs from the first in f00700.txt and f01400.txt; the third's record names an outputs
    manifest the store does not have."""
    from harness.runs.outputlist import listed
    from harness.storage.outputs import store_outputs
    from harness.storage.store import Store

    records = Records(tmp_path / ".harness" / "runs", tmp_path / ".harness" / "index.sqlite")
    store = Store(tmp_path / ".harness" / "objects")  # where make_server looks for objects
    ids = []
    for n, changed in enumerate(((), (700, 1400)), start=1):
        run_id = records.allocate().id
        out = records.paths(run_id).outputs
        (out / "parts").mkdir(parents=True)
        for i in range(1500):
            (out / "parts" / f"f{i:05d}.txt").write_text(f"{i}{'+' if i in changed else ''}\n")
        snapshot = store_outputs(out, store, tmp_path / f"skipped{n}").snapshot
        first, total = listed(snapshot)
        record = _record(run_id, n, "many", {"model": "m"}, {})
        record["outputs"] = {"manifest": snapshot.digest, "files": first, "file_count": total}
        records.write(record)
        ids.append(run_id)
    lost = records.allocate().id
    record = _record(lost, 3, "lost", {"model": "m"}, {})
    record["outputs"] = records.read(ids[0])["outputs"] | {"manifest": "0" * 64}
    records.write(record)
    return records, [*ids, lost]


@pytest.fixture()
def many_server(many: tuple[Records, list[str]]) -> Iterator[UiServer]:
    with serving(many[0]) as ui:
        yield ui


def _get(url: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# -- the API and the CLI, no browser --------------------------------------------------------------------------------
def test_api_lists_runs_newest_first_without_the_heavy_parts(server: UiServer, runs: Any) -> None:
    status, headers, body = _get(server.url + "api/runs")
    assert status == 200 and headers["Content-Type"] == "application/json"
    listed = json.loads(body)
    ids = runs[1]
    assert listed["count"] == 6
    assert [r["id"] for r in listed["runs"]] == [ids[k] for k in ("xss", "failed", "dirty", "lr48", "lr24", "base")]
    first = listed["runs"][0]
    assert first["metrics"]["by_season"] == {"summer": 30.5} and "packages" not in first["environment"]
    assert server.url.startswith("http://127.0.0.1:")


def test_api_reads_one_run_by_prefix_and_says_not_found(server: UiServer, runs: Any) -> None:
    run_id = runs[1]["lr48"]
    status, _, body = _get(server.url + f"api/runs/{run_id[:5]}")
    assert status == 200 and json.loads(body)["environment"]["packages"][0]["name"] == "numpy"
    status, _, body = _get(server.url + "api/runs/zzzzzz")
    assert status == 404 and json.loads(body)["error"] == "NotFound"


def test_api_filters_with_the_ls_where_language(server: UiServer, runs: Any) -> None:
    ids = runs[1]
    query = urllib.parse.quote(WHERE)
    listed = json.loads(_get(server.url + f"api/runs?where={query}")[2])
    assert [r["id"] for r in listed["runs"]] == [ids["lr48"], ids["lr24"]]
    assert (listed["count"], listed["total"], listed["warnings"]) == (2, 6, [])
    status, _, body = _get(server.url + "api/runs?where=" + urllib.parse.quote("metrics.rmse_test <"))
    assert status == 400 and json.loads(body)["error"] == "QueryError"


def test_outputs_come_a_page_at_a_time_from_the_manifest_past_the_record_s_first_1000(
    many_server: UiServer, many: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.runs.outputlist

    manifests_read: list[str] = []
    load_snapshot = harness.runs.outputlist.load_snapshot

    def counted(store: Any, digest: str) -> Any:
        manifests_read.append(digest)
        return load_snapshot(store, digest)

    monkeypatch.setattr(harness.runs.outputlist, "load_snapshot", counted)
    records, (run_id, _, lost) = many
    url = many_server.url + f"api/runs/{run_id}/outputs"
    first = json.loads(_get(url)[2])
    assert (len(first["files"]), first["total"], first["offset"], first["limit"]) == (200, 1500, 0, 200)
    digest = records.read(run_id)["outputs"]["files"]["parts/f00000.txt"]
    assert first["files"][0] == {"path": "parts/f00000.txt", "sha256": digest, "size": 2, "kind": "text"}

    # Paging on reaches every file exactly once, in path order, the 500 the record does not list included.
    seen, offset = [], 0
    while True:
        page = json.loads(_get(url + f"?offset={offset}&limit=333")[2])
        assert (page["total"], page["offset"], page["limit"]) == (1500, offset, 333)
        if not page["files"]:
            break
        assert len(page["files"]) == min(333, 1500 - offset)
        seen += [f["path"] for f in page["files"]]
        offset += len(page["files"])
    assert seen == [f"parts/f{i:05d}.txt" for i in range(1500)]
    # Its manifest was read once for all those pages: a page of a run of 100,000 outputs is not a re-read of them.
    assert manifests_read == [records.read(run_id)["outputs"]["manifest"]]
    last = json.loads(_get(url + "?offset=1499&limit=1000")[2])["files"]
    assert [(f["path"], f["size"]) for f in last] == [("parts/f01499.txt", 5)]

    for query, message in [
        ("offset=-1", "offset must be a whole number from 0 to 1,000,000,000,000, not '-1'"),
        ("offset=ten", "offset must be a whole number from 0 to 1,000,000,000,000, not 'ten'"),
        ("offset=1e3", "offset must be a whole number from 0 to 1,000,000,000,000, not '1e3'"),
        ("offset=10000000000000", "offset must be a whole number from 0 to 1,000,000,000,000, not '10000000000000'"),
        ("limit=0", "limit must be a whole number from 1 to 1,000, not '0'"),
        ("limit=1001", "limit must be a whole number from 1 to 1,000, not '1001'"),
        ("limit=2.5", "limit must be a whole number from 1 to 1,000, not '2.5'"),
    ]:
        status, _, body = _get(url + "?" + query)
        error = json.loads(body)
        assert (status, error["error"], error["message"]) == (400, "UsageError", message), query
        assert "?offset=0&limit=200" in error["hint"]
    # A manifest the store lacks is named, never taken for a list of the record's 1,000.
    status, _, body = _get(many_server.url + f"api/runs/{lost}/outputs")
    assert status == 404 and "the rest are in its outputs manifest " + "0" * 64 in json.loads(body)["message"]


def test_serves_only_its_own_files_to_loopback_hosts(server: UiServer) -> None:
    status, headers, body = _get(server.url)
    assert status == 200 and b"/static/app.js" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"http" not in body.replace(b'lang="en"', b""), "the page must not load anything from elsewhere"
    for path in ("static/../ui.py", "static/%2e%2e/ui.py", "static/nothing.js", "elsewhere"):
        assert _get(server.url + path)[0] == 404, path
    # A page elsewhere that rebinds its DNS name to 127.0.0.1 sends its own Host header: refused.
    assert _get(server.url + "api/runs", host=f"evil.example:{server.port}")[0] == 403


def test_cli_prints_the_url_and_stops_cleanly_on_ctrl_c(tmp_path: Path, runs: Any) -> None:
    (tmp_path / "harness.toml").write_text('name = "bikes"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--no-open", "-C", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[2]
        assert url.startswith("http://127.0.0.1:"), line
        assert json.loads(_get(url + "api/runs")[2])["count"] == 6
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_busy_port_is_a_clear_error(server: UiServer, runs: Any) -> None:
    with pytest.raises(HarnessError, match=f"cannot listen on 127.0.0.1:{server.port}") as caught:
        make_server(runs[0], port=server.port)
    assert caught.value.hint and "--port 0" in caught.value.hint


# -- in the browser -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium and chromium-driver are not installed; ./scripts/setup installs them", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _open_table(driver: Any, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def _row_ids(driver: Any) -> list[str]:
    return list(driver.execute_script("return [...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.id)"))


def _row(driver: Any, run_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#runs tbody tr[data-id="{run_id}"]')


def _filter(driver: Any, expression: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "where")
    box.clear()
    box.send_keys(expression, Keys.ENTER)
    # The server evaluates the expression; the page marks the body once it has applied (or refused) it.
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.filtered") == expression.strip())


@pytest.mark.browser
def test_table_sort_filter_run_page_and_comparison(browser: Any, server: UiServer, runs: Any) -> None:
    from selenium.webdriver.common.by import By

    ids = runs[1]
    ARTIFACTS.mkdir(exist_ok=True)
    _open_table(browser, server.url)
    assert _row_ids(browser) == [ids[k] for k in ("xss", "failed", "dirty", "lr48", "lr24", "base")]
    groups = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#runs thead tr.groups th.group")]
    assert groups == ["Meta", "Provenance", "Params", "Metrics"]

    # Markup in a run name is text, never markup.
    assert XSS_NAME in _row(browser, ids["xss"]).text
    assert browser.execute_script("return window.__xss") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#runs tbody script, #runs tbody img")

    # Dirty and failed runs are marked.
    dirty, failed = _row(browser, ids["dirty"]), _row(browser, ids["failed"])
    assert "is-dirty" in dirty.get_attribute("class") and "DIRTY" in dirty.text
    assert "is-failed" in failed.get_attribute("class") and "failed (1)" in failed.text
    browser.save_screenshot(str(ARTIFACTS / "ui-table.png"))

    # Sort by a metric: ascending numerically on the first click, descending on the second; no value sorts last.
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-key="metrics.rmse_test"]')
    header.click()
    ascending = [ids[k] for k in ("lr48", "lr24", "xss", "dirty", "base", "failed")]
    assert _row_ids(browser) == ascending
    browser.find_element(By.CSS_SELECTOR, 'th[data-key="metrics.rmse_test"]').click()
    assert _row_ids(browser) == [ids[k] for k in ("base", "dirty", "xss", "lr24", "lr48", "failed")]
    browser.find_element(By.CSS_SELECTOR, 'th[data-key="metrics.rmse_test"]').click()
    browser.save_screenshot(str(ARTIFACTS / "ui-table-sorted.png"))

    # Filter with a `harness ls --where` expression (the order stays the table's); a bad one is reported and
    # leaves the table as it was; a name no run has is pointed out.
    _filter(browser, WHERE)
    assert _row_ids(browser) == [ids["lr48"], ids["lr24"]]
    assert browser.find_element(By.ID, "count").text == "2 of 6 runs"
    browser.save_screenshot(str(ARTIFACTS / "ui-table-filtered.png"))
    _filter(browser, "not dirty and (status == 'failed' or metrics.by_season.summer > 30)")
    assert sorted(_row_ids(browser)) == sorted([ids["failed"], ids["xss"]])
    _filter(browser, "metrics.rmse_test <")
    error = browser.find_element(By.ID, "where-error")
    assert error.is_displayed() and "not a valid expression" in error.text
    assert sorted(_row_ids(browser)) == sorted([ids["failed"], ids["xss"]])
    _filter(browser, 'params.model in ["baseline", "ridge"]')
    assert not error.is_displayed() and sorted(_row_ids(browser)) == sorted([ids["base"], ids["xss"]])
    _filter(browser, "metric.rmse_test < 40")
    assert _row_ids(browser) == []
    assert "did you mean metrics.rmse_test" in browser.find_element(By.ID, "where-warning").text
    _filter(browser, "")
    assert len(_row_ids(browser)) == 6 and not browser.find_element(By.ID, "where-warning").is_displayed()

    # Only the columns that vary: the shared data snapshot and image go, the params stay.
    browser.find_element(By.ID, "varying").click()
    keys = browser.execute_script("return [...document.querySelectorAll('#runs th[data-key]')].map(t => t.dataset.key)")
    assert "data" not in keys and "image" not in keys and "params.lags" in keys and "commit" in keys
    browser.find_element(By.ID, "varying").click()

    # A run's page shows its full record.
    _row(browser, ids["lr48"]).find_element(By.CSS_SELECTOR, "a").click()
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '#view-run [data-section="metrics"]'))
    page = browser.find_element(By.ID, "view-run").text
    assert "3" * 40 in page  # the commit
    assert "lags 48 override" in page and "model linear_regression config:linear_regression" in page
    assert "rmse_test 35.1" in page
    assert "numpy 1.26.4" in page and "model.json " + "3" * 64 in page
    browser.save_screenshot(str(ARTIFACTS / "ui-run.png"))
    browser.get(server.url + f"#/run/{ids['xss']}")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '#view-run [data-section="metrics"]'))
    assert XSS_NAME in browser.find_element(By.CSS_SELECTOR, "#view-run h1").text
    assert browser.execute_script("return window.__xss") is None
    _open_table(browser, server.url)
    _wait(browser, lambda d: d.find_element(By.ID, "view-table").is_displayed())

    # Pick two runs and compare them: differing values are highlighted.
    _row(browser, ids["lr24"]).find_element(By.CSS_SELECTOR, "input.pick").click()
    assert not browser.find_element(By.ID, "compare").is_enabled()
    _row(browser, ids["lr48"]).find_element(By.CSS_SELECTOR, "input.pick").click()
    browser.find_element(By.ID, "compare").click()
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#view-compare table.compare"))
    lags = browser.find_element(By.CSS_SELECTOR, 'tr[data-key="params.lags"]')
    assert "diff" in lags.get_attribute("class") and lags.text.split() == ["params.lags", "24", "48"]
    assert "same" in browser.find_element(By.CSS_SELECTOR, 'tr[data-key="environment.image_id"]').get_attribute("class")
    assert "diff" in browser.find_element(By.CSS_SELECTOR, 'tr[data-key="code.commit"]').get_attribute("class")
    browser.save_screenshot(str(ARTIFACTS / "ui-compare.png"))


@pytest.mark.browser
def test_a_thousand_runs_render_sort_and_filter_quickly(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    records = Records(tmp_path / "runs", tmp_path / "index.sqlite")
    for n in range(1000):
        run_id = records.allocate().id
        params = {"model": ["baseline", "linear_regression", "ridge"][n % 3], "lags": n % 50, "alpha": n / 1000}
        metrics = {"rmse_test": 30 + (n * 7919) % 400 / 10, "rmse_train": 20 + n % 17, "r2": (n % 100) / 100}
        record = _record(run_id, 1, f"run {n}", params, metrics)
        record["started_at"] = f"2026-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
        records.write(record)
    ui = make_server(records)
    thread = threading.Thread(target=ui.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        _open_table(browser, ui.url)
        loaded = time.perf_counter() - started
        # A page of rows at a time (100 by default), so 10,000 runs draw about as quickly as 100; a click moves on.
        assert len(_row_ids(browser)) == 100
        assert browser.find_element(By.ID, "page-info").text == "1–100 of 1000"
        first_page = _row_ids(browser)
        browser.find_element(By.ID, "next").click()
        assert browser.find_element(By.ID, "page-info").text == "101–200 of 1000"
        assert not set(_row_ids(browser)) & set(first_page)
        # Selecting all shown selects across pages.
        browser.find_element(By.ID, "pick-all").click()
        assert browser.find_element(By.ID, "plot").text == "Plot selected (1000)"
        browser.find_element(By.ID, "pick-all").click()
        Select(browser.find_element(By.ID, "page-size")).select_by_visible_text("1000")
        assert len(_row_ids(browser)) == 1000
        sort_ms = browser.execute_script(
            "const t = performance.now(); document.querySelector('th[data-key=\"metrics.rmse_test\"]').click();"
            "return performance.now() - t;"
        )
        values = browser.execute_script(
            "const i = [...document.querySelectorAll('#runs thead tr.cols th')]"
            ".findIndex(th => th.dataset.key === 'metrics.rmse_test');"
            "return [...document.querySelectorAll('#runs tbody tr')].map(r => parseFloat(r.children[i].title"
            " || r.children[i].textContent));"
        )
        assert values == sorted(values)
        started = time.perf_counter()
        _filter(browser, 'metrics.rmse_test < 40 and params.model == "ridge"')
        filter_s = time.perf_counter() - started
        expected = sum(1 for n in range(1000) if n % 3 == 2 and 30 + (n * 7919) % 400 / 10 < 40)
        assert len(_row_ids(browser)) == expected
        print(f"1,000 runs: page ready in {loaded:.2f} s, sort {sort_ms:.0f} ms, filter {filter_s:.2f} s")
        assert loaded < 5 and sort_ms < 1000 and filter_s < 2
    finally:
        ui.shutdown()
        ui.server_close()
        thread.join(5)


@pytest.mark.browser
def test_many_outputs_are_paged_on_the_run_page_and_bounded_in_a_comparison(
    browser: Any, many_server: UiServer, many: Any
) -> None:
    from selenium.webdriver.common.by import By

    records, (a, b, lost) = many
    browser.get(many_server.url + f"#/run/{a}")
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelector('[data-section=outputs]')?.dataset.state") == "ready",
    )

    def paths() -> list[str]:
        script = "return [...document.querySelectorAll('table.outputs tbody tr')].map(r => r.dataset.path)"
        return list(browser.execute_script(script))

    def shown() -> str:
        return str(browser.find_element(By.ID, "outputs-shown").text)

    assert shown() == "showing 200 of 1,500 files"
    assert paths() == [f"parts/f{i:05d}.txt" for i in range(200)]
    more = browser.find_element(By.ID, "outputs-more")
    assert more.text == "show 200 more"
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", more)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "ui-run-many-outputs.png"))
    for n in range(400, 1500, 200):
        more.click()
        _wait(browser, lambda _, n=n: shown() == f"showing {n:,} of 1,500 files")
    assert more.text == "show 100 more"
    more.click()
    _wait(browser, lambda _: shown() == "showing 1,500 of 1,500 files")
    assert paths() == [f"parts/f{i:05d}.txt" for i in range(1500)] and not more.is_displayed()

    # Where the manifest cannot be read, the record's own 1,000 stay, said to be the first of 1,500, with the error.
    browser.get(many_server.url + f"#/run/{lost}")
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelector('[data-section=outputs]')?.dataset.state") == "ready",
    )
    outputs = browser.find_element(By.CSS_SELECTOR, '#view-run [data-section="outputs"]')
    assert outputs.find_element(By.ID, "outputs-cut").text == (
        f"the record lists the first 1,000 of 1,500 files (by path); all of them: harness data show {'0' * 64}"
    )
    assert "which cannot be read" in outputs.find_element(By.CSS_SELECTOR, "p.error").text

    # Two records of 1,000 listed files each: 200 per-file rows, those that differ first, and what is left out.
    browser.get(many_server.url + f"#/compare/{a}/{b}")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#view-compare table.compare"))
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#view-compare tr[data-key^=\"outputs.files.\"]')]"
        ".map(r => [r.dataset.key, r.className])"
    )
    assert len(rows) == 200 and ["outputs.files.parts/f00700.txt", "diff"] in rows
    assert browser.find_element(By.ID, "compare-files-note").text == (
        f"the record of {a} lists the first 1,000 of 1,500 output files; the record of {b} lists the first 1,000 of "
        f"1,500 output files; 800 of 1,000 outputs.files rows left out (0 of them differ); harness diff {a} {b} "
        "compares every output file and names each one that differs"
    )
    browser.save_screenshot(str(ARTIFACTS / "ui-compare-many-outputs.png"))
