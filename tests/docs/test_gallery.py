"""The recipe gallery (docs/gen/_gallery_recipes.py): every example gets a page with its output,
and the reports and figures it embeds exist and load nothing from the network."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    path = ROOT / "docs" / "gen" / "_gallery_recipes.py"
    spec = importlib.util.spec_from_file_location("losskit_docs_gallery", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gallery = _load()


class _Loads(HTMLParser):
    """Every address an HTML page would fetch by itself (links to follow are not fetched)."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[str] = []
        self.iframes: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None or (tag == "a" and name == "href"):
                continue
            if name in {"src", "href", "data", "poster", "action", "srcset"}:
                self.addresses.append(value)
                if tag == "iframe":
                    self.iframes.append(value)
                if tag == "img":
                    self.images.append(value)


def loads(html: str) -> _Loads:
    parser = _Loads()
    parser.feed(html)
    return parser


def remote(address: str) -> bool:
    return re.match(r"\s*(https?:|ftp:|//)", address, re.IGNORECASE) is not None


def assert_offline(html: str, where: str) -> None:
    fetched = [a for a in loads(html).addresses if remote(a)]
    assert fetched == [], f"{where} loads {fetched}"
    # CSS can fetch too: url(...) and @import
    css = re.findall(r"(?:url\(\s*['\"]?|@import\s+['\"]?)(https?:|//)", html, re.IGNORECASE)
    assert css == [], f"{where} has CSS that loads from the network"


# A recipe written for these tests: it prints, draws a progress line, and writes a report and
# a figure where the real examples do (runs/<name>/).
HELLO = '''\
"""Say hello: a recipe of the tests.

It prints ``hello`` and writes a report.

    python examples/hello.py --times 3
"""

import argparse
import sys
from pathlib import Path

# the gallery's small run
GALLERY = ["--times", "2"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--times", type=int, default=3)
    args = parser.parse_args()
    print("train step 1/2 (50%), ETA 0:00:01, 0:00:00 elapsed  loss 1.0")
    for i in range(args.times):
        print(f"hello {i}")
    print("starts in an empty folder:", list(Path().iterdir()) == [])
    out = Path("runs/hello")
    out.mkdir(parents=True)
    here = Path.cwd()  # in the page's text it shows as relative; its scripts keep it as is
    script = f"<script>var at = '{here}';</script>"
    body = f"<p>{here / 'runs' / 'hello'}</p>"
    (out / "report.html").write_text(f"<html><head>{script}</head><body>{body}</body></html>")
    print("wrote", (out / "report.html").resolve())
    (out / "curve.png").write_bytes(b"\\x89PNG fake")
    print("to stderr", file=sys.stderr)
'''


def write_example(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def build(examples: Path, use_directory_urls: bool = True) -> dict[str, bytes]:
    """The gallery of the recipes in ``examples`` (none imports torch: the runner starts cold)."""
    files: dict[str, bytes] = {}

    def write(path: str, data: bytes) -> None:
        assert path not in files, f"{path} written twice"
        files[path] = data

    gallery.build(write, examples, use_directory_urls=use_directory_urls, warm=False)
    return files


def test_a_recipe_becomes_a_page_with_its_output_report_and_figure(tmp_path: Path) -> None:
    write_example(tmp_path / "ex", "hello", HELLO)
    files = build(tmp_path / "ex")
    assert sorted(files) == [
        "gallery/SUMMARY.md",
        "gallery/hello.md",
        "gallery/hello/curve.png",
        "gallery/hello/report.html",
        "gallery/index.md",
    ]
    report = files["gallery/hello/report.html"].decode()
    assert report.endswith("<body><p>runs/hello</p></body></html>")
    assert re.search(r"<script>var at = '/.+/scratch';</script>", report)
    assert files["gallery/hello/curve.png"] == b"\x89PNG fake"
    page = files["gallery/hello.md"].decode()
    assert page.startswith("# Say hello: a recipe of the tests\n")
    assert "It prints `hello` and writes a report." in page  # reST backticks made Markdown
    assert "    python examples/hello.py --times 3" in page  # the intro's command stays code
    # the printed output, without the progress line (it carries timings) or stderr
    output = page.split("```text\n")[1].split("\n```")[0]
    assert output.splitlines() == [
        "hello 0",
        "hello 1",
        "starts in an empty folder: True",
        "wrote runs/hello/report.html",
    ]
    assert "`python examples/hello.py --times 2`" in page
    assert '<iframe class="losskit-report" src="report.html"' in page  # page URL: hello/
    assert "[open it on its own](hello/report.html)" in page
    assert "![hello: curve.png](hello/curve.png)" in page
    # the source, less its docstring and the GALLERY lines
    source = page.split("```python\n")[1].split("```")[0]
    assert source.startswith("import argparse\n")
    assert "GALLERY" not in source
    assert "gallery's small run" not in source
    assert 'print(f"hello {i}")' in source
    assert files["gallery/SUMMARY.md"] == b"* [Recipes](index.md)\n* [hello](hello.md)\n"
    index = files["gallery/index.md"].decode()
    assert (
        "-   **[hello](hello.md)**\n\n    ---\n\n    Say hello: a recipe of the tests.\n" in index
    )
    assert "GALLERY" in index  # the convention is documented where people look


def test_without_directory_urls_the_iframe_points_into_the_recipe_folder(tmp_path: Path) -> None:
    write_example(tmp_path / "ex", "hello", HELLO)
    page = build(tmp_path / "ex", use_directory_urls=False)["gallery/hello.md"].decode()
    assert 'src="hello/report.html"' in page


def test_recipes_are_discovered_in_name_order(tmp_path: Path) -> None:
    for name in ("zeta", "alpha"):
        write_example(tmp_path / "ex", name, f'"""{name}."""\nGALLERY = []\nprint("{name}")\n')
    files = build(tmp_path / "ex")
    summary = files["gallery/SUMMARY.md"].decode()
    assert summary.index("alpha.md") < summary.index("zeta.md")
    assert "```text\nzeta\n```" in files["gallery/zeta.md"].decode()


def test_an_example_without_gallery_arguments_is_refused_by_name(tmp_path: Path) -> None:
    write_example(tmp_path / "ex", "slow", '"""Slow."""\nprint("hours")\n')
    with pytest.raises(gallery.GalleryError, match=r"slow\.py: no GALLERY = \[\.\.\.\]"):
        build(tmp_path / "ex")


@pytest.mark.parametrize(
    ("value", "shown"), [('"--epochs 2"', "'--epochs 2'"), ("[2]", r"\[2\]"), ("ARGS", "ARGS")]
)
def test_gallery_arguments_must_be_a_literal_list_of_strings(
    tmp_path: Path, value: str, shown: str
) -> None:
    write_example(tmp_path / "ex", "odd", f'"""Odd."""\nARGS = []\nGALLERY = {value}\n')
    with pytest.raises(gallery.GalleryError, match=rf"odd\.py: GALLERY must be .* got {shown}$"):
        build(tmp_path / "ex")


def test_an_example_that_fails_fails_the_build_with_its_error(tmp_path: Path) -> None:
    write_example(tmp_path / "ex", "broken", '"""Broken."""\nGALLERY = ["--x"]\n1 / 0\n')
    with pytest.raises(gallery.GalleryError) as info:
        build(tmp_path / "ex")
    message = str(info.value)
    assert "broken.py: `python examples/broken.py --x` exited with 1" in message
    assert "ZeroDivisionError" in message


def test_an_example_over_its_time_fails_the_build(tmp_path: Path) -> None:
    path = write_example(
        tmp_path / "ex", "sleepy", '"""Sleepy."""\nimport time\nGALLERY = []\ntime.sleep(30)\n'
    )
    recipe = gallery.read_recipe(path)
    with pytest.raises(gallery.GalleryError, match=r"sleepy\.py: .* ran over 1 s"):
        gallery.run([recipe], timeout=1, warm=False)


def test_offline_check_catches_remote_loads() -> None:
    # the checks below must be able to fail
    assert_offline('<a href="https://example.org">a link</a><img src="x.png">', "ok")
    for bad in (
        '<script src="https://cdn.example/u.js"></script>',
        '<link rel="stylesheet" href="//fonts.example/f.css">',
        "<style>body { background: url('http://example.org/b.png') }</style>",
        "<style>@import 'https://example.org/x.css';</style>",
    ):
        with pytest.raises(AssertionError):
            assert_offline(bad, "bad")


# What the examples write today; a new example is checked by the generic assertions only.
EXPECTED_FIGURES = {
    "compare_regression_losses": "compare.html",
    "distillation": "report.html",
    "gan": "report.html",
    "multitask": "report.html",
    "segmentation": "report.html",
    "toy_pareto": "toy_pareto.png",
    "vae": "report.html",
}


@pytest.fixture(scope="module")
def site() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    gallery.build(files.__setitem__)  # every real example, small
    return files


def test_every_example_has_a_page_with_its_output(site: dict[str, bytes]) -> None:
    stems = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
    assert stems
    summary = site["gallery/SUMMARY.md"].decode()
    index = site["gallery/index.md"].decode()
    for stem in stems:
        page = site[f"gallery/{stem}.md"].decode()
        output = page.split("## Output\n")[1].split("```text\n")[1].split("\n```")[0]
        assert output.strip(), stem
        assert "Traceback" not in output, stem
        assert f"({stem}.md)" in summary
        assert f"**[{stem}]({stem}.md)**" in index
        expected = EXPECTED_FIGURES.get(stem)
        if expected is not None:
            assert f"gallery/{stem}/{expected}" in site, stem


def test_embedded_reports_and_figures_exist_and_load_nothing_remote(
    site: dict[str, bytes],
) -> None:
    embedded = 0
    for path in (p for p in site if p.endswith(".md") and "/" not in p[len("gallery/") :]):
        stem = Path(path).stem
        if stem in {"index", "SUMMARY"}:
            continue
        page = site[path].decode()
        assert_offline(page, path)
        assert "/scratch" not in page, path
        found = loads(page)
        images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
        for address in [*found.iframes, *images]:
            assert not remote(address), (path, address)
            name = address.rsplit("/", 1)[-1]
            assert f"gallery/{stem}/{name}" in site, (path, address)
            embedded += 1
    assert embedded >= len(EXPECTED_FIGURES)
    for path, data in site.items():
        if path.endswith(".html"):
            html = data.decode()
            assert "<script" in html, path  # a report with its charts, not an empty page
            assert_offline(html, path)
            shown = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.DOTALL)
            assert "/scratch" not in shown, path  # the build's temporary folder is not shown
        if path.endswith(".png"):
            assert data.startswith(b"\x89PNG\r\n\x1a\n"), path


def test_the_compare_recipe_shows_a_ranking(site: dict[str, bytes]) -> None:
    page = site["gallery/compare_regression_losses.md"].decode()
    output = page.split("```text\n")[1].split("\n```")[0]
    ranks = re.findall(r"^tier (\d+)\s+terms\.fit\.loss=(\w+)\s+clean val MSE", output, re.M)
    assert sorted(loss for _, loss in ranks) == ["huber", "l1", "mse"]
    assert [int(t) for t, _ in ranks] == sorted(int(t) for t, _ in ranks)
    html = site["gallery/compare_regression_losses/compare.html"].decode()
    assert "terms.fit.loss=mse" in html
