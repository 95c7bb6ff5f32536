"""Screenshots of the built documentation site with Debian's headless Chromium.

Serves a built site (``make docs`` writes ``site/``) on a local port and saves a PNG of each page
asked for; by default the catalogue page of the focal loss and the getting-started guide::

    python docs/screenshots.py site /tmp/screens
    python docs/screenshots.py site /tmp/screens reference/losses/dice/

Chromium comes from the system (``apt-get install -y chromium``; ``make browser``); nothing is
downloaded. Not part of the site (``exclude_docs`` in mkdocs.yml).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGES = ("reference/losses/focal/", "getting_started/")
WIDTH, HEIGHT = 1280, 1400


def browser() -> str:
    """The path of the system's Chromium; a clear error when there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium found: install Debian's (apt-get install -y chromium)")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """The site served on 127.0.0.1 (a free port) for the duration of the block: its root URL."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def file_name(page: str) -> str:
    """``reference/losses/focal/`` -> ``reference-losses-focal.png``."""
    return (page.strip("/").replace("/", "-") or "index") + ".png"


def screenshot(url: str, out: Path, *, binary: str | None = None, timeout: float = 60.0) -> Path:
    """Save a PNG of ``url`` as headless Chromium renders it (fonts and scripts loaded)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="losskit-chromium-") as profile:
        subprocess.run(
            [
                binary or browser(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "--virtual-time-budget=3000",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {url} to {out}")
    return out


def take(site: Path, out_dir: Path, pages: Sequence[str] = PAGES) -> list[Path]:
    """A PNG of each page of the built ``site`` in ``out_dir``; their paths."""
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site} holds no built site (index.html): run `make docs` first")
    binary = browser()
    with serve(site) as root:
        return [screenshot(root + p, out_dir / file_name(p), binary=binary) for p in pages]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (make docs: site/)")
    parser.add_argument("out", type=Path, help="where the PNGs go")
    parser.add_argument("pages", nargs="*", default=list(PAGES), help="pages, relative URLs")
    args = parser.parse_args(argv)
    for path in take(args.site, args.out, args.pages):
        print(path)


if __name__ == "__main__":
    main()
