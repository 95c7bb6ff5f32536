"""Generates the reference pages (run by mkdocs-gen-files at build time).

Everything under reference/ comes from the code: the API from docstrings (mkdocstrings), the
loss catalogue from the loss registry, the balancers from the balancer registry, the config
reference from the constructors' signatures and the CLI reference from the typer commands. A
loss, a balancer or a command appears here by being registered.
"""

import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _api
import _balancers
import _catalogue
import _cli
import _config

INDEX = """# Reference

Generated from the code at build time: nothing here is written by hand.

- [Loss catalogue](losses/index.md): {losses} losses, one page each, from the loss registry.
- [Balancers](balancers/index.md): {balancers} methods, one page each, from the balancer registry.
- [Config reference](config.md): every section of a run file and the constructor it feeds.
- [CLI reference](cli.md): every `losskit` command with its options.
- [API](api/losskit.md): {modules} modules, from their docstrings.
"""


def _title(path: str) -> str:
    return Path(path).stem


def main() -> None:
    catalogue = _catalogue.pages()
    balancers = _balancers.pages()
    api = _api.pages()
    generated = {**catalogue, **balancers, **_config.pages(), **_cli.pages(), **api}
    for path, text in generated.items():
        with mkdocs_gen_files.open(path, "w") as page:
            page.write(text)
    with mkdocs_gen_files.open("reference/index.md", "w") as page:
        page.write(
            INDEX.format(losses=len(catalogue) - 1, balancers=len(balancers) - 1, modules=len(api))
        )

    def listed(pages: dict[str, str], prefix: str) -> list[str]:
        rest = sorted(p for p in pages if not p.endswith("/index.md"))
        return [f"    * [{_title(p)}]({p.removeprefix('reference/')})" for p in rest]

    nav = [
        "* [Reference](index.md)",
        "* [Loss catalogue](losses/index.md)",
        *listed(catalogue, "losses"),
        "* [Balancers](balancers/index.md)",
        *listed(balancers, "balancers"),
        "* [Config](config.md)",
        "* [CLI](cli.md)",
        "* API",
        *(f"    * [{Path(p).stem}]({p.removeprefix('reference/')})" for p in api),
    ]
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as summary:
        summary.write("\n".join(nav) + "\n")


main()
