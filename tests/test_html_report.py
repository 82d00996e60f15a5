"""The HTML report and comparison pages, loaded in a real headless Chromium: DOM, images, console, network, screenshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gstbench.store.reader import load_results
from gstbench.testing.forkserver import run_gstbench

STORED = Path(__file__).parent / "data" / "stored-eb9532a"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Where the screenshots go besides the test's folder (set it to look at them).
SHOTS = os.environ.get("GSTBENCH_SCREENSHOTS")

if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("Debian's chromium is missing: .ci/run installs it (apt-get install -y chromium)", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")


def gstbench(*args: str) -> subprocess.CompletedProcess:
    return run_gstbench(*args, timeout=300, env={**os.environ, "GSTBENCH_LOAD_PLUGINS": ""})


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def load(browser, page_file: Path, shot: Path) -> tuple:
    """Open the page; return it with its console errors and every URL it asked for."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(shot), full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(SHOTS) / shot.name)
    return page, errors, requests


def check_images(page) -> int:
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"figure {alt} did not decode"
    return len(images)


def test_the_report_page_shows_claims_leaderboard_figures_failures_corruption_and_environment(tmp_path, browser):
    run = tmp_path / "schedule"
    shutil.copytree(STORED / "schedule", run)
    ok = next(p for p in sorted((run / "cells").glob("*/result.json")) if '"status":"ok"' in p.read_text()
              or '"status": "ok"' in p.read_text())
    ok.write_text(ok.read_text()[:40])  # a truncated result: a corrupt cell
    page_file = tmp_path / "report.html"
    proc = gstbench("report", str(run), "--format", "html", "--output", str(page_file))
    assert proc.returncode == 0, proc.stderr
    page, errors, requests = load(browser, page_file, tmp_path / "report-schedule.png")
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # self-contained
    results = load_results(run, warn=False)
    configurations = [c for c in results.configurations]
    assert page.locator("#leaderboard tbody tr").count() == len(configurations)
    assert check_images(page) >= 1
    assert "stored-schedule (quick)" in page.locator("h1").inner_text()
    failed = page.locator("#failed").inner_text()
    assert "RuntimeError: this metric always fails" in failed
    corrupt = page.locator("#corrupt").inner_text()
    assert "result.json" in corrupt and str(ok.parent) in corrupt
    environment = page.locator("#environment").inner_text()
    stored = next(c.result for c in results.cells if c.result is not None)
    assert stored.environment.torch in environment and stored.environment.device in environment


def test_a_rounds_report_draws_its_curves_and_lmc_figures(tmp_path, browser):
    run = tmp_path / "rounds"
    shutil.copytree(STORED / "rounds", run)
    page_file = tmp_path / "rounds.html"
    assert gstbench("report", str(run), "--format", "html", "--output", str(page_file)).returncode == 0
    page, errors, _ = load(browser, page_file, tmp_path / "report-rounds.png")
    assert errors == []
    assert page.locator("#leaderboard tbody tr").count() == len(load_results(run, warn=False).configurations)
    assert check_images(page) >= 2  # the curves and the LMC figure


def test_the_comparison_page_has_a_row_per_configuration_and_metric(tmp_path, browser):
    base, new = tmp_path / "base", tmp_path / "new"
    shutil.copytree(STORED / "schedule", base)
    shutil.copytree(STORED / "schedule", new)
    page_file = tmp_path / "compare.html"
    proc = gstbench("compare", str(base), str(new), "--format", "html", "--output", str(page_file))
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(gstbench("compare", str(base), str(new), "--format", "json").stdout)
    page, errors, requests = load(browser, page_file, tmp_path / "compare.png")
    assert errors == [] and all(url.startswith(("file:", "data:")) for url in requests)
    assert page.locator("#comparison tbody tr").count() == len(expected["rows"]) > 0
    assert "no regression" in page.locator("h1").inner_text()


def test_the_claims_table_fits_a_1280_pixel_window_power_and_runs_for_80_percent_in_view(tmp_path, browser):
    """The claims of the replication runs (tradeoff, methods, rewind; seeds 0-6 and 0-2, as `gstbench report` gave
    them): the table scrolls no sideways, and power and the runs 80% needs are within the window."""
    from gstbench.reports.html_report import _claims_section, _page

    stored = json.loads((Path(__file__).parent / "data" / "replication-claims.json").read_text())
    for suite, claims in stored.items():
        page_file = tmp_path / f"claims-{suite}.html"
        page_file.write_text(_page(suite, _claims_section(claims)))
        page, errors, _ = load(browser, page_file, tmp_path / f"claims-{suite}.png")
        assert errors == []
        scroll, client = page.evaluate("(() => { const s = document.querySelector('#claims').parentElement; "
                                       "return [s.scrollWidth, s.clientWidth]; })()")
        assert scroll <= client, (suite, scroll, client)
        edges = dict(page.evaluate("Array.from(document.querySelectorAll('#claims thead th'))"
                                   ".map(th => [th.innerText.replace(/\\s+/g, ' '), th.getBoundingClientRect().right])"))
        assert max(edges["power"], edges["n for 80%"]) <= 1280 and max(edges.values()) <= 1280, (suite, edges)
        rows = page.locator("#claims tbody tr.claim").count()
        assert rows == len(claims)
