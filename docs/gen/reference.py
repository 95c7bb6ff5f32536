"""Generates the reference pages (run by mkdocs-gen-files at build time)."""

import mkdocs_gen_files

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as nav:
    nav.write("* [Reference](index.md)\n")
with mkdocs_gen_files.open("reference/index.md", "w") as page:
    page.write("# Reference\n\nGenerated from the code at build time.\n")
