"""MkDocs hook: fill ``<!-- errands-help: COMMAND -->`` markers with that command's ``--help``.

The help text is rendered from the installed ``errands`` CLI at build time, so the CLI page can
never drift from the code (a marker naming a command that doesn't exist fails the build).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

# the checkout being documented, not whichever errands the environment has installed
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from errands.cli import main

_MARKER = re.compile(r"<!-- errands-help: ?([a-z -]*?) ?-->")


def _help(command: str) -> str:
    args = [*command.split(), "--help"]
    # a fixed width keeps the page the same on every terminal that builds it
    result = CliRunner().invoke(main, args, prog_name="errands", terminal_width=100)
    if result.exit_code != 0:
        raise RuntimeError(f"`errands {' '.join(args)}` failed ({result.exit_code}): {result.output}")
    return f"```text\n$ errands {' '.join(args)}\n{result.output.rstrip()}\n```"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _MARKER.sub(lambda match: _help(match.group(1)), markdown)
