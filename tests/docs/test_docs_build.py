"""The documentation site builds with ``mkdocs build --strict`` (any warning fails it: a broken
link or anchor, a docstring mkdocstrings can't parse, a CLI command the help hook can't render),
so the suite, and therefore CI, builds the docs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner: noise
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    assert "WARNING" not in output, output
    # the generated parts are there: the API reference from docstrings, the CLI help from click
    reference = (site / "reference" / "errands" / "index.html").read_text("utf-8")
    assert "perform_in" in reference and "list_jobs" in reference
    cli = (site / "cli" / "index.html").read_text("utf-8")
    assert "errands worker --help" in cli and "--grace SECONDS" in cli
    assert "errands-help:" not in cli, "a CLI help marker was left unexpanded"


def _griffe_hook():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("griffe_doctest", ROOT / "docs" / "_hooks" / "griffe_doctest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_examples_are_fenced_once() -> None:
    fence = _griffe_hook().fence_examples
    text = "Do it.\n\n>>> send(42).id\n'0190'\n\nAfter.\n\nKeys::\n\n    a = 1\n\n::\n\n    b = 2"
    fenced = fence(text)
    assert fenced == ("Do it.\n\n```pycon\n>>> send(42).id\n'0190'\n```\n\nAfter.\n\nKeys:\n\n    a = 1"
                      "\n\n\n\n    b = 2")
    assert fence(fenced) == fenced  # a second pass (griffe may call the hook twice) changes nothing
