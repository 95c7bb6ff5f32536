"""Generates the recipe gallery from examples/ (run by mkdocs-gen-files at build time)."""

import mkdocs_gen_files

with mkdocs_gen_files.open("gallery/SUMMARY.md", "w") as nav:
    nav.write("* [Recipes](index.md)\n")
with mkdocs_gen_files.open("gallery/index.md", "w") as page:
    page.write("# Recipes\n\nThe examples/ folder, run at build time.\n")
