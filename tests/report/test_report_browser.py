"""The report of a real small run, opened in headless Chromium.

Chromium is required, not optional: on Debian ``apt-get install -y chromium``. The test opens a
copy of the report with a probe script added first in ``<head>`` (and ``script-src
'unsafe-inline'`` added to the page's Content-Security-Policy for it alone); once the page has
loaded, the probe writes every image's natural size and every error it saw (script errors,
failed loads, ``console.error``, CSP violations, which any network fetch would be) into the DOM,
which ``--dump-dom`` prints. It also saves a screenshot of the unmodified report.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from losskit.report import render

SCRIPT = Path(__file__).parents[1] / "tracking" / "small_run.py"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = "apt-get update && apt-get install -y chromium"

PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var target = e.target && e.target !== window ? (e.target.src || e.target.tagName) : "";
    errors.push("error: " + (e.message || "failed to load " + String(target).slice(0, 80)));
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled rejection: " + e.reason);
  });
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
  });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {alt: img.alt, complete: img.complete,
              width: img.naturalWidth, height: img.naturalHeight};
    });
    var out = document.createElement("pre");
    out.id = "losskit-probe";
    out.textContent = JSON.stringify({images: images, errors: errors});
    document.body.appendChild(out);
  });
})();
</script>"""


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"headless Chromium is required for this test and was not found; install it: {INSTALL}"
    )


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("browser-run")
    options = ["--epochs", "2", "--steps", "30", "--every", "10", "--diagnostics"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return render(run)


def test_every_plot_loads_without_errors(report: Path, tmp_path: Path) -> None:
    browser = chromium()
    page = report.read_text()
    policy = "default-src 'none';"
    assert policy in page
    probed = page.replace(policy, policy + " script-src 'unsafe-inline';", 1)
    probed = probed.replace("<head>", "<head>" + PROBE, 1)
    copy = tmp_path / "probed.html"
    copy.write_text(probed)
    done = run_chromium(browser, tmp_path / "profile", "--dump-dom", copy.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="losskit-probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the probe did not report; stderr:\n{done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    assert result["errors"] == []
    images = result["images"]
    assert len(images) == page.count("<img ")
    assert len(images) >= 7  # 4 loss curves, weights, shares, gradient norms, conflict matrix
    for image in images:
        assert image["complete"], image
        assert image["width"] > 0, image
        assert image["height"] > 0, image


def test_screenshot(report: Path, tmp_path: Path) -> None:
    browser = chromium()
    shot = tmp_path / "report.png"
    done = run_chromium(
        browser,
        tmp_path / "profile",
        "--window-size=1400,3200",
        f"--screenshot={shot}",
        report.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a page of plots, not a blank one
