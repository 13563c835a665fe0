"""report.html in a real headless browser (Debian's chromium, driven through chromedriver's
WebDriver HTTP protocol with urllib): the recommendation is in the first 1280×800 screen and
nothing runs off a 1000-px-wide window.

``make test`` installs chromium and chromium-driver where apt-get exists; elsewhere these tests
skip. ``python tests/test_report_browser.py DIR OUT.png`` screenshots DIR/report.html whole at
1000 px wide (how benchmarks/results/compare-fashion-mnist/report.png was made).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from report_matrices import format2_matrix, old_matrix
from torchslim.report import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _tools() -> tuple[str, str] | None:
    driver = shutil.which("chromedriver")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    return (driver, browser) if driver and browser else None


class Browser:
    """One headless chromium session behind a chromedriver this process started (and stops)."""

    def __init__(self, driver: str, browser: str, width: int, height: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            self._wait_ready()
            args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", f"--window-size={width},{height}"]
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": browser, "args": args}}}}
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _wait_ready(self, seconds: float = 20) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"chromedriver did not answer on {self.base} within {seconds} s")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}").get("value") or {}
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.read()[:500]!r}") from None

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, path: Path) -> None:
        self.cmd("POST", "/url", {"url": path.resolve().as_uri()})

    def js(self, script: str):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    def resize(self, width: int, height: int) -> None:
        """Make the viewport (not the window) ``width`` × ``height`` CSS pixels."""
        self.cmd("POST", "/window/rect", {"width": width, "height": height})
        inner = self.js("return [window.innerWidth, window.innerHeight]")
        if inner != [width, height]:
            self.cmd("POST", "/window/rect", {"width": 2 * width - inner[0], "height": 2 * height - inner[1]})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.cmd("GET", "/screenshot"))

    def close(self) -> None:
        try:
            self.cmd("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    tools = _tools()
    if tools is None:
        pytest.skip("chromium and chromedriver are not installed (make test installs Debian's chromium and "
                    "chromium-driver where apt-get exists)")
    b = Browser(*tools, 1280, 800)
    yield b
    b.close()


MATRICES = {"format-1 (committed)": old_matrix, "format-2 (targets, intervals, ties, failures)": format2_matrix}

# The first recommendation's box, and how far the widest element reaches.
MEASURE = """
const rec = document.querySelector('#recommendation li');
const r = rec.getBoundingClientRect();
let right = 0;
for (const el of document.querySelectorAll('body *')) right = Math.max(right, el.getBoundingClientRect().right);
return {recTop: r.top, recBottom: r.bottom, recText: rec.textContent,
        tableTop: document.querySelector('#matrix').getBoundingClientRect().top,
        scrollWidth: document.documentElement.scrollWidth, right: right, inner: window.innerWidth};
"""


@pytest.fixture(scope="module", params=list(MATRICES))
def report(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_report(MATRICES[request.param](), out)
    return out / "report.html"


def test_recommendation_in_first_screen(browser, report):
    browser.resize(1280, 800)
    browser.open(report)
    m = browser.js(MEASURE)
    assert m["recText"].startswith("Resource-limited")
    assert 0 <= m["recTop"] < 800 and m["recBottom"] < 800, m
    assert m["recTop"] < m["tableTop"], "the answer comes before the table"


def test_nothing_overflows_at_1000px(browser, report):
    browser.resize(1000, 800)
    browser.open(report)
    m = browser.js(MEASURE)
    assert m["inner"] == 1000, m
    assert m["scrollWidth"] <= 1000, m
    # the table's scroll box would hide an overflow from scrollWidth: every element must fit
    assert m["right"] <= 1000, m


def screenshot(folder: Path, png: Path, width: int = 1000) -> None:
    """Save the whole of ``folder/report.html`` at ``width`` CSS px as ``png``."""
    tools = _tools()
    if tools is None:
        raise SystemExit("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    b = Browser(*tools, width, 800)
    try:
        b.resize(width, 800)
        b.open(folder / "report.html")
        b.resize(width, int(b.js("return document.documentElement.scrollHeight")))
        png.write_bytes(b.screenshot())
    finally:
        b.close()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
