"""`snakemake --report` opened in headless Chromium: the page is a React app that builds its views from data
embedded in the HTML, so the test clicks through it as a reader would (the menu, a category, a result's
buttons) and checks what the rendered DOM then holds: the big results plot, the tables with their
intervals and the training curves, each with its caption.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), which needs nothing
beyond Chromium itself. Without a Chromium the test skips, except with CI=true, where it fails.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from tiny_workflow import e2e_config, snakemake
from w2s import layout

pytest_plugins = ["finished_run"]
pytestmark = pytest.mark.e2e

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str:
    found = next((path for path in map(shutil.which, CHROMIUM) if path), None)
    if found is None:
        problem = f"no Chromium on PATH (looked for {', '.join(CHROMIUM)}; Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return found


class Browser:
    """A headless Chromium with one page, driven over the DevTools protocol on a pipe: Chromium reads
    commands from its fd 3 and writes replies and events to its fd 4, each a JSON message ending in NUL."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 900):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # Above 4, so that placing them on 3 and 4 in the child cannot overwrite one with the other.
        child_read, child_write = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, replies_write))
        for fd in (commands_read, replies_write):
            os.close(fd)

        def on_fds_3_and_4():
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # as root, as CI runs
                "--disable-gpu",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            pass_fds=(3, 4, child_read, child_write),
            preexec_fn=on_fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_read)
        os.close(child_write)
        self._buffer, self._next_id = b"", 0
        target = self.send("Target.createTarget", to_browser=True, url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", to_browser=True, targetId=target, flatten=True)["sessionId"]
        self.send("Page.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, *, to_browser: bool = False, **params) -> dict:
        """Run a DevTools command on the page (or on the browser itself) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if not to_browser:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout_s: float = 60):
        """The value of `expression` once it is truthy (an expression that throws, on an element not yet
        there, counts as falsy): React renders after the event that asks it to."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.evaluate(f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()")
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"the report never showed {what}")

    def open(self, path: Path) -> None:
        self.send("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("document.readyState === 'complete' && document.querySelector('#app nav') !== null", "its menu")

    def click(self, selector_js: str, what: str) -> None:
        """Click the element that the JavaScript expression `selector_js` finds, once it exists."""
        self.wait_for(f"({selector_js}) != null", what)
        self.evaluate(f"({selector_js}).click()")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", to_browser=True)
        except RuntimeError:
            pass
        self.process.wait(timeout=30)
        os.close(self._commands)
        os.close(self._replies)


MENU_ITEM = "[...document.querySelectorAll('nav a')].find(a => a.textContent.trim() === {!r})"
ROW = "[...document.querySelectorAll('nav table tbody tr')].find(r => r.cells[0].textContent.trim() === {!r})"
# The two buttons at the end of a result's row: view (an image in the page, a table as a download), info.
VIEW, INFO = 0, 1
SHOWN_IMAGE = (
    "(() => {{ const i = document.querySelector('#app img[src^=\"data:image/png\"]:not(nav img)');"
    " return i && i.complete && i.naturalWidth > 0 && i.getAttribute('src').includes({!r})"
    " && i.getAttribute('src') }})()"
)
DESCRIPTION = "(() => { const t = document.querySelector('nav').innerText; return t.includes('DESCRIPTION') && t })()"


def button(row: str, which: int) -> str:
    return f"({row}).cells[({row}).cells.length - 1].querySelectorAll('a')[{which}]"


def data_uri_bytes(uri: str) -> bytes:
    header, payload = uri.split(",", 1)
    assert header.endswith(";base64"), header
    return base64.b64decode(unquote(payload))


def first_words(rst: Path, n: int = 12) -> str:
    """The start of a caption, enough to tell it from the others (the two tables' begin alike)."""
    return " ".join(rst.read_text().split()[:n])


REPORT_TEXTS = Path(__file__).resolve().parents[1] / "workflow" / "report"


@pytest.fixture(scope="session")
def chromium() -> str:
    return chromium_binary()


@pytest.fixture(scope="module")
def report(chromium, e2e_run) -> tuple[Path, Path]:
    """The finished tiny run's folder and its report (chromium first, so that a missing browser skips
    before the run)."""
    html = e2e_run / "browser-report.html"
    snakemake(e2e_run, e2e_config(), "--report", str(html))
    return e2e_run, html


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    opened = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield opened
    opened.close()


def show_image(browser: Browser, row: str, name: str) -> bytes:
    """Click the row's view button; the bytes of the image the page then shows."""
    browser.click(button(row, VIEW), f"the view button of {name}")
    return data_uri_bytes(browser.wait_for(SHOWN_IMAGE.format(f"filename={name};"), f"{name} as an image"))


def caption(browser: Browser, row: str, name: str) -> str:
    browser.click(button(row, INFO), f"the info button of {name}")
    return browser.wait_for(DESCRIPTION, f"the description of {name}")


def test_report_shows_the_big_results_plot_with_its_caption(report, browser):
    run, html = report
    browser.open(html)
    browser.click(MENU_ITEM.format("Results"), "the Results category")
    plot = layout.plot_path("w2s_results", "png")
    row = ROW.format(plot)
    assert show_image(browser, row, "w2s_results.png") == (run / plot).read_bytes()
    assert first_words(REPORT_TEXTS / "w2s_results.rst") in " ".join(caption(browser, row, plot).split())


def test_report_offers_the_tables_with_their_intervals(report, browser):
    run, html = report
    tables = {}
    for path, rst in ((layout.summary_path(), "summary.rst"), (layout.aggregate_path(), "aggregate.rst")):
        # Afresh for each table: a result's description takes the place of the category's list.
        browser.open(html)
        browser.click(MENU_ITEM.format("Results"), "the Results category")
        row = ROW.format(path)
        # A table is offered as a download of the file itself, which the page holds as a data URI.
        href = browser.wait_for(f"{button(row, VIEW)}.getAttribute('href')", f"the download of {path}")
        tables[path] = data_uri_bytes(href)
        assert tables[path] == (run / path).read_bytes(), path
        assert first_words(REPORT_TEXTS / rst) in " ".join(caption(browser, row, path).split()), path
    aggregate = pd.read_csv(io.BytesIO(tables[layout.aggregate_path()]))
    bounded = [c.removesuffix("_lo") for c in aggregate.columns if c.endswith("_lo")]
    assert {"student_acc", "pgr_acc"} <= set(bounded)
    for column in bounded:
        assert {column, f"{column}_hi"} <= set(aggregate.columns), column


def test_report_shows_the_training_curves_of_every_seed(report, browser):
    run, html = report
    config = e2e_config()
    (task,), (weak,), (strong,) = config["tasks"], config["weak_models"], config["strong_models"]
    for seed in config["seeds"]:
        browser.open(html)
        browser.click(MENU_ITEM.format("Training curves"), "the Training curves category")
        # One task: the category opens on its only subcategory, a row per model pair and seed.
        row = ROW.format(f"{weak} → {strong}, seed {seed}")
        path = run / layout.curves_plot_path().format(task=task, seed=seed, weak=weak, strong=strong)
        assert show_image(browser, row, path.name) == path.read_bytes(), seed
        assert first_words(REPORT_TEXTS / "curves.rst") in " ".join(caption(browser, row, path.name).split())
