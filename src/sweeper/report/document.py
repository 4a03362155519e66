"""A small document model (sections of text, tables and figures) written as Markdown or self-contained HTML.

    >>> doc = Document("Title", [Section("Part", ["Some `code`.", Table(["a"], [["1"]])])])
    >>> print(doc.markdown())
    # Title
    <BLANKLINE>
    ## Part
    <BLANKLINE>
    Some `code`.
    <BLANKLINE>
    | a |
    |---|
    | 1 |
    <BLANKLINE>
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Table:
    """A table of text cells."""

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A PNG on disk; Markdown links it by file name, HTML embeds it as a data URI."""

    path: Path
    caption: str


Block = str | Table | Image


@dataclass
class Section:
    """A titled run of paragraphs (plain text with `code` spans), tables and images."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    """A title, an intro and sections."""

    title: str
    sections: list[Section]

    def markdown(self) -> str:
        parts = [f"# {self.title}"]
        for section in self.sections:
            parts.append(f"## {section.title}")
            parts.extend(markdown_block(block) for block in section.blocks)
        return "\n\n".join(parts) + "\n"

    def html(self) -> str:
        body = [f"<h1>{inline(self.title)}</h1>"]
        for section in self.sections:
            body.append(f"<h2>{inline(section.title)}</h2>")
            body.extend(html_block(block) for block in section.blocks)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def markdown_block(block: Block) -> str:
    if isinstance(block, Table):
        lines = [markdown_row(block.headers), "|" + "---|" * len(block.headers)]
        return "\n".join(lines + [markdown_row(row) for row in block.rows])
    if isinstance(block, Image):
        return f"![{block.caption}]({block.path.name})\n\n*{block.caption}*"
    return block


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def html_block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{inline(cell)}</th>" for cell in block.headers)
        rows = "".join("<tr>" + "".join(f"<td>{inline(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        return (f"<figure><img alt=\"{html.escape(block.caption)}\" src=\"data:image/png;base64,{data}\">"
                f"<figcaption>{inline(block.caption)}</figcaption></figure>")
    return f"<p>{inline(block)}</p>"


def inline(text: str) -> str:
    """Escaped text with `code` spans and **bold** as HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px;font-size:.95em}
figure{margin:1em 0}
img{max-width:100%;border:1px solid #eee}
figcaption{font-style:italic;color:#555}
"""
