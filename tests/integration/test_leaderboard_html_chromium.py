"""The leaderboard HTML page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Checks: the page loads from a ``file://`` URL without console errors or page errors (and without
any network request: the page is self-contained), a full-page screenshot is a non-empty PNG,
every chart image decodes, and clicking a numeric header sorts that column ascending, then
descending, with missing values last.

Skipped only when no ``chromium`` executable is on PATH (CI installs it: ``apt-get install -y
chromium``).
"""

from __future__ import annotations

import importlib.util
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tg_llava_eval.leaderboards import build_leaderboard
from tg_llava_eval.results import BenchmarkRegistry

# The fixed record set of the leaderboard unit tests (tests/integration is not a package).
_SPEC = importlib.util.spec_from_file_location(
    "leaderboard_fixed_records", Path(__file__).resolve().parents[1] / "unit" / "leaderboards" / "fixed_records.py"
)
fixed_records = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fixed_records)

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    records, samples = fixed_records.fixed_frames()
    out = tmp_path_factory.mktemp("board")
    build_leaderboard(records, out, samples=samples, registry=BenchmarkRegistry(), formats=("html",))
    return (out / "leaderboard.html").as_uri()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def _column(page, table_id: str, index: int) -> list[str]:
    return page.locator(f"#{table_id} tbody tr td:nth-child({index + 1})").all_inner_texts()


def test_page_renders_sorts_and_has_no_console_errors(browser, page_url):
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda message: problems.append(f"{message.type}: {message.text}") if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on("request", lambda request: requests.append(request.url) if not request.url.startswith(("file:", "data:")) else None)
    page.goto(page_url)
    page.wait_for_load_state("load")

    screenshot = page.screenshot(full_page=True)
    with Image.open(io.BytesIO(screenshot)) as image:
        assert image.width > 600 and image.height > 1000
        assert len(set(image.convert("L").getdata())) > 10  # not a blank page

    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 5 and all(complete and width > 0 for complete, width in images)

    table = "table-main_vlmevalkit"
    headers = page.locator(f"#{table} th").all_inner_texts()
    mme = headers.index("MME")
    assert _column(page, table, mme) == ["1502.4", "1550.0", "–", "1520.5", "1569.8", "1548.1", "1601.2"]
    header = page.locator(f"#{table} th", has_text="MME")
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert _column(page, table, mme) == ["1502.4", "1520.5", "1548.1", "1550.0", "1569.8", "1601.2", "–"]
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert _column(page, table, mme) == ["1601.2", "1569.8", "1550.0", "1548.1", "1520.5", "1502.4", "–"]
    # The rows moved as a whole: the best MME belongs to TG-LLaVA-Qwen2-7B.
    assert page.locator(f"#{table} tbody tr").first.inner_text().split("\t")[3] == "TG-LLaVA-Qwen2-7B"

    # A text column sorts by the browser's locale collation.
    before = _column(page, table, headers.index("Model"))
    page.locator(f"#{table} th", has_text="Model").click()
    names = _column(page, table, headers.index("Model"))
    collated = page.evaluate("names => names.slice().sort((a, b) => a.localeCompare(b))", before)
    assert names == collated and names != before and sorted(names) == sorted(before)

    assert problems == [] and requests == []
    page.close()
