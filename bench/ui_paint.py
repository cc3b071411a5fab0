"""First paint of `harness ui` over 100 runs and over 10,000 runs, in headless Chromium's own performance timing.

Setup (not measured): two project stores of realistic records (bench/ls.py's fake_runs and setup_harness) under
bench/out/ui-<N>, reused when they already hold N runs.

Measured, per store size, in a fresh tab of headless Chromium (Debian's chromium + chromium-driver, Selenium)
loading the page of a `harness ui` server started for that store (`python -m harness ui --no-open`):
  fcp           first-contentful-paint (Paint Timing): the header and toolbar, before any run is fetched
  api_start     when the page asked for /api/runs (Resource Timing requestStart)
  api           the /api/runs response, request start to its last byte (Resource Timing), and its size
  rows_painted  the first frame painted after the first row went into the table (a MutationObserver put in
                the document before the page's scripts, then two animation frames): the rows on screen
(largest-contentful-paint is no help here: the header outsizes any table cell, so it equals fcp.)
Rounds alternate between the sizes (and the baseline tree, if given); each line is the median over the rounds with
the min-max. The ratio line divides the 10,000-run medians by the 100-run ones.

--baseline REV serves the page of another git revision (git archive into bench/out/ui-tree-REV, run with the
same interpreter and libraries), e.g. the tree before the table was paged: c1b134f.

Usage: python bench/ui_paint.py [--sizes 100,10000] [--rounds 5] [--baseline REV]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, compile_harness, release_tree  # bench/ is on sys.path when a script in it runs
from ls import fake_runs, setup_harness

OUT = Path(__file__).resolve().parent / "out"

# Put in every new document before the page's own scripts (CDP): the time of the first frame painted after the
# first row went into the table, the same way for any version of the page.
OBSERVE = """
(() => {
  const painted = () => requestAnimationFrame(() => requestAnimationFrame(() => {
    window.__rowsPainted = performance.now();
  }));
  const watch = new MutationObserver(() => {
    if (document.querySelector("#runs tbody tr")) { watch.disconnect(); painted(); }
  });
  watch.observe(document, { childList: true, subtree: true });
})();
"""

READ = """
const done = arguments[arguments.length - 1];
const read = () => {
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const api = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/api/runs"));
  done({
    fcp: paint ? paint.startTime : null, rows_painted: window.__rowsPainted,
    api_start: api ? api.requestStart : null, api: api ? api.responseEnd - api.requestStart : null,
    api_bytes: api ? api.encodedBodySize : null, rows: document.querySelectorAll("#runs tbody tr").length,
  });
};
const wait = () => (window.__rowsPainted === undefined ? setTimeout(wait, 20) : read());
wait();
"""


def start_server(project: Path, pythonpath: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--no-open", "--port", "0", "-C", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=OUT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split()[2]


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(120)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": OBSERVE})
    return driver


def measure(driver: Any, url: str) -> dict[str, Any]:
    driver.get("about:blank")
    driver.get(url)
    return dict(driver.execute_async_script(READ))


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):8.0f} ms ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", metavar="REV", help="also the page of this git revision")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds: at least 3 (a median and a spread)")
    sizes = [int(s) for s in args.sizes.split(",")]
    OUT.mkdir(exist_ok=True)
    compile_harness()
    trees = {"this tree": REPO}
    if args.baseline:
        trees[args.baseline] = release_tree(args.baseline, OUT / f"ui-tree-{args.baseline}")
    for n in sizes:
        started = time.perf_counter()
        setup_harness(OUT / f"ui-{n}", fake_runs(n))
        print(f"setup: {n} runs in {OUT / f'ui-{n}'} ({time.perf_counter() - started:.1f} s)")

    results: dict[tuple[str, int], list[dict[str, Any]]] = {(t, n): [] for t in trees for n in sizes}
    driver = browser()
    try:
        for round_no in range(args.rounds + 1):  # round 0 warms the disk cache and Chromium up, not counted
            for tree, path in trees.items():
                for n in sizes:
                    proc, url = start_server(OUT / f"ui-{n}", path)
                    try:
                        sample = measure(driver, url)
                    finally:
                        proc.terminate()
                        proc.wait(10)
                    if round_no:
                        results[(tree, n)].append(sample)
    finally:
        driver.quit()

    print(f"\nheadless Chromium, {args.rounds} rounds; median (min-max), times from navigation start")
    for (tree, n), samples in results.items():
        rows = samples[0]["rows"]
        kb = samples[0]["api_bytes"] / 1000 if samples[0]["api_bytes"] else 0
        print(f"{tree}, {n} runs ({rows} rows drawn; /api/runs {kb:.0f} kB)")
        for key in ("fcp", "api_start", "api", "rows_painted"):
            values = [s[key] for s in samples if s[key] is not None]
            print(f"  {key:12} {spread(values)}")
    for tree in trees:
        if len(sizes) >= 2:
            small, big = results[(tree, sizes[0])], results[(tree, sizes[-1])]
            ratios = []
            for key in ("fcp", "rows_painted"):
                a = [s[key] for s in small if s[key] is not None]
                b = [s[key] for s in big if s[key] is not None]
                if a and b:
                    ratios.append(f"{key} {statistics.median(b) / statistics.median(a):.2f}x")
            print(f"{tree}: {sizes[-1]} runs against {sizes[0]}: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
