"""MkDocs hooks: docstrings written for Sphinx-style roles read cleanly on the site.

losskit's docstrings cross-reference with reST roles (``:class:`Term```); mkdocstrings renders
the role's text literally before the code span, so it is dropped here, as is the second colon
of a ``Example::`` literal-block marker.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|math):<code>~?")
_LITERAL = re.compile(r"(<p>[^<]*\w):(:</p>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """The page's HTML without reST role prefixes and with ``Word::`` read as ``Word:``."""
    return _LITERAL.sub(r"\1\2", _ROLE.sub("<code>", html))
