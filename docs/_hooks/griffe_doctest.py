"""Griffe extension: show errands' docstring examples as code in the API reference.

errands' docstrings follow STYLE.md: Google sections, and ``>>>`` examples or ``::`` literal
blocks where they read best, often outside an ``Examples:`` section. Markdown would render a
bare ``>>>`` line as three nested block quotes (and ``[[42]]`` in its output as a link), so
each run of example lines is fenced as ``pycon``, and the ``::`` of a literal block becomes
``:`` (a bare ``::`` line goes; the indented block under it already is Markdown code). The
source stays as it is.
"""

from __future__ import annotations

from typing import Any

import griffe

_FENCE = "```"


def fence_examples(text: str) -> str:
    """Fence every run of ``>>>``/``...`` lines (and the output lines right after them)."""
    out: list[str] = []
    lines = text.splitlines()
    i, in_fence = 0, False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(_FENCE):
            in_fence = not in_fence
        if in_fence or not stripped.startswith(">>>"):
            if not in_fence and stripped == "::":
                line = ""  # reST's bare "::" introduces a literal block and shows nothing
            elif not in_fence and stripped.endswith("::") and not stripped.startswith(":"):
                line = line[:-1]  # reST "text::" introduces a literal block; Markdown shows it as code
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        block: list[str] = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(lines[i][len(indent):])
            i += 1
        out += [f"{indent}{_FENCE}pycon", *(f"{indent}{b}" for b in block), f"{indent}{_FENCE}"]
    return "\n".join(out)


class FenceDoctestExamples(griffe.Extension):
    """Rewrite each loaded object's docstring with ``fence_examples``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_examples(obj.docstring.value)
