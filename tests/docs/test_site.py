"""The documentation site, built once with ``mkdocs build --strict`` and checked as users see it.

Every registered loss and balancer has its generated page, the catalogue index links each loss,
the CLI page lists every command and option, the config page every section, no page loads
anything from the network, and headless Chromium renders a loss page and the getting-started
guide into real (not blank) screenshots.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text of its <style> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _tags(page: Path) -> _Tags:
    parser = _Tags()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with every warning an error."""
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "DISABLE_MKDOCS_2_WARNING": "true",
        "NO_MKDOCS_2_WARNING": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_every_registered_loss_has_a_catalogue_page(site: Path) -> None:
    from losskit import losses

    for spec in losses.available():
        page = site / "reference" / "losses" / spec.name / "index.html"
        assert page.is_file(), f"no catalogue page for the loss {spec.name!r}"
        text = _text(page)
        assert spec.name in text
        for section in ("Formula", "Input contract", "Options", "Reductions", "Peers"):
            assert section in text, f"{spec.name}: no {section!r} section"
        contract = getattr(spec.factory, "contract", None)
        if contract is not None:
            assert contract.input in text, spec.name
            assert contract.target in text, spec.name


def test_the_focal_page_shows_its_options_defaults_and_peers(site: Path) -> None:
    text = _text(site / "reference" / "losses" / "focal" / "index.html")
    assert "focusing exponent" in text  # gamma's description, from the docstring
    assert "0.25" in text  # alpha's default, from the signature
    assert "binary_focal_loss_with_logits" in text  # a kornia row of coming_from.md
    assert "use_softmax" in text  # a MONAI option name the class declares as renamed


def test_the_catalogue_index_links_every_loss(site: Path) -> None:
    from losskit import losses

    index = site / "reference" / "losses" / "index.html"
    hrefs = {a.get("href", "") for tag, a in _tags(index).tags if tag == "a"}
    for name in losses.LOSSES.names():
        assert f"{name}/" in hrefs, f"the catalogue index does not link {name!r}"
    families = {spec.family for spec in losses.available()}
    ids = {a.get("id") for _, a in _tags(index).tags}
    assert families <= ids, f"family sections missing: {families - ids}"


def test_every_registered_balancer_has_a_page_with_its_cost(site: Path) -> None:
    from losskit import balancers

    for entry in balancers.BALANCERS.entries():
        page = site / "reference" / "balancers" / entry.name / "index.html"
        assert page.is_file(), f"no page for the balancer {entry.name!r}"
        text = _text(page)
        for section in ("What it needs", "Cost", "Options"):
            assert section in text, f"{entry.name}: no {section!r} section"
    upgrad = _text(site / "reference" / "balancers" / "upgrad" / "index.html")
    assert "torchjd.aggregation.UPGrad" in upgrad
    assert re.search(r"\d+\.\d\dx", upgrad), "no step-time ratio from measured.json"


def test_the_cli_page_lists_every_command_and_option(site: Path) -> None:
    import typer.main

    from losskit.cli import app

    text = _text(site / "reference" / "cli" / "index.html")
    root = typer.main.get_command(app)
    commands = getattr(root, "commands", {})
    assert len(commands) >= 9
    for name, command in commands.items():
        assert f"losskit {name}" in text, f"the CLI page lacks 'losskit {name}'"
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                assert param.opts[0] in text, f"losskit {name}: option {param.opts[0]} missing"


def test_the_config_page_covers_every_section_and_trainer_argument(site: Path) -> None:
    import inspect

    from losskit import config

    text = _text(site / "reference" / "config" / "index.html")
    for section in config.RunConfig.model_fields:
        assert f"[{section}]" in text, f"the config page lacks [{section}]"
    supplied = config.SUPPLIED["trainer"]
    for name in inspect.signature(config.constructor("trainer")).parameters:
        if name not in supplied and name != "self":
            assert name in text, f"the config page lacks the trainer argument {name!r}"
    assert "adamw" in text
    assert "cosine_annealing_lr" in text


def test_an_api_page_per_public_module(site: Path) -> None:
    api = site / "reference" / "api"
    losskit_page = (api / "losskit" / "index.html").read_text(encoding="utf-8")
    assert 'id="losskit.Criterion"' in losskit_page
    losses_page = (api / "losses" / "index.html").read_text(encoding="utf-8")
    assert 'id="losskit.losses.FocalLoss"' in losses_page
    for module in ("balancers", "engine", "experiments", "tracking", "config", "report", "data"):
        assert (api / module / "index.html").is_file(), f"no API page for losskit.{module}"


_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_LOADING = {"script": "src", "img": "src", "iframe": "src", "source": "src", "link": "href"}


def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 100
    found = []
    for page in pages:
        parsed = _tags(page)
        for tag, attrs in parsed.tags:
            url = attrs.get(_LOADING.get(tag, ""), "")
            if tag == "link" and attrs.get("rel") in ("canonical",):
                continue
            if url and _REMOTE.match(url):
                found.append(f"{page.relative_to(site)}: <{tag}> {url}")
        for style in parsed.styles:
            if re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", style):
                found.append(f"{page.relative_to(site)}: a <style> loads {style[:80]!r}")
    for sheet in site.rglob("*.css"):
        css = sheet.read_text(encoding="utf-8", errors="replace")
        if re.search(r"@import\s+url\(\s*['\"]?(?:https?:)?//|url\(\s*['\"]?https?://", css):
            found.append(f"{sheet.relative_to(site)} loads a remote stylesheet or font")
    assert not found, "\n".join(found[:20])


def _screenshots() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs" / "screenshots.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chromium_renders_a_loss_page_and_getting_started(site: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    screenshots = _screenshots()
    out = Path(os.environ.get("LOSSKIT_TEST_ARTIFACTS", tmp_path)) / "docs-screens"
    paths = screenshots.take(site, out)
    assert [p.name for p in paths] == ["reference-losses-focal.png", "getting_started.png"]
    images = []
    for path in paths:
        print(f"screenshot: {path}")
        with Image.open(path) as image:
            assert image.size == (screenshots.WIDTH, screenshots.HEIGHT)
            rgb = image.convert("RGB")
            colours = rgb.getcolors(maxcolors=1 << 20) or []
            assert len(colours) > 50, f"{path.name}: {len(colours)} colours, a blank page?"
            spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
            assert spread > 10, f"{path.name}: grey-level spread {spread:.1f}, a blank page?"
            # the header bar (indigo) is drawn: the theme's bundled CSS loaded
            r, g, b = rgb.getpixel((screenshots.WIDTH // 2, 10))
            assert b > r + 40, f"{path.name}: header pixel {(r, g, b)} is not the indigo bar"
            images.append(rgb)
    assert images[0].tobytes() != images[1].tobytes()
