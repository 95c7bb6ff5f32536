"""Generates the recipe gallery from examples/ (run by mkdocs-gen-files at build time).

The work is done by ``_gallery_recipes.py`` beside this file (see its docstring for how an
example becomes a page); this script only hands its files to mkdocs-gen-files.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import mkdocs_gen_files


def _load_recipes() -> ModuleType:
    # mkdocs-gen-files runs this file by path, so its sibling is not importable by name.
    path = Path(__file__).with_name("_gallery_recipes.py")
    spec = importlib.util.spec_from_file_location("losskit_docs_gallery", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _write(path: str, data: bytes) -> None:
    with mkdocs_gen_files.open(path, "wb") as f:
        f.write(data)


_load_recipes().build(
    _write, use_directory_urls=bool(mkdocs_gen_files.config.get("use_directory_urls", True))
)
