"""Griffe extension: doctest examples in docstrings render as code, not as Markdown.

Without it a doctest's output line such as `[4, 3, 3]` reads as a Markdown reference link (a strict-build warning),
and a prompt line after a paragraph joins that paragraph.
"""

from __future__ import annotations

import textwrap
from typing import Any

from griffe import Extension, Object


def fence_doctests(text: str) -> str:
    """Each run of lines from a `>>>` prompt to the next blank line, dedented, in a ```pycon fence."""
    out: list[str] = []
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if block and line.strip():
            block.append(line)
            continue
        if block:
            out += ["", "```pycon", *textwrap.dedent("\n".join(block)).splitlines(), "```"]
            block = []
        if line.lstrip().startswith(">>>"):
            block.append(line)
        else:
            out.append(line)
    return "\n".join(out[:-1] if out and not out[-1] else out)


class DoctestsAsCode(Extension):
    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
