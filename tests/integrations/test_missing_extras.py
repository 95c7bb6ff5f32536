"""Without their framework, the integration modules say which extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest

from losskit.errors import MissingDependencyError


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [("lightning", "lightning", "lightning"), ("accelerate", "accelerate", "accelerate")],
)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, framework, None)  # makes `import framework` fail
    monkeypatch.delitem(sys.modules, f"losskit.integrations.{module}", raising=False)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'losskit\[{extra}\]'"):
        importlib.import_module(f"losskit.integrations.{module}")
