"""MkDocs hook: pages generated from the code at build time, so they cannot drift from it.

- `reference/spec.md`: every spec key with its type, default and meaning, read from the pydantic models the spec is
  validated with (`sweeper.spec.Spec`, the trial keys of `sweeper.config.HyperParams`, a search distribution);
- `reference/modules.md`: every module of the package with the first sentence of its docstring;
- `reference/api/*.md`: one API page per package (mkdocstrings renders the docstrings).
"""

from __future__ import annotations

import ast
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "sweeper"
# Written on another branch; until it lands the site shows a stub so that the nav and links hold.
PENDING_GUIDE = "guides/add-a-task.md"


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the site."""
    sys.path.insert(0, str(SRC))  # the checkout's code, whatever is installed
    pages = {"reference/spec.md": spec_reference(), "reference/modules.md": module_table(), **api_pages()}
    if files.get_file_from_path(PENDING_GUIDE) is None:
        pages[PENDING_GUIDE] = "# Add a task\n\nThis guide is being written; until then see `sweeper/tasks/`.\n"
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    return files


# --- the spec reference ---------------------------------------------------------------------------------------------

def spec_reference() -> str:
    from sweeper.config import HyperParams, TrialConfig
    from sweeper.spec import Distribution, Spec

    trial_only = set(TrialConfig.model_fields) - set(HyperParams.model_fields)
    spec_rows = rows(Spec, "", skip={"defaults", "search"})
    trial_rows = rows(HyperParams, "")
    search_rows = rows(Distribution, "")
    return "\n".join([
        "# Spec reference",
        "",
        "Generated from the spec's own pydantic models (`sweeper.spec`, `sweeper.config`, each method's settings) "
        "when the site is built: every key, its type, its default and its meaning. An unknown key is an error "
        "naming the file, line and field (`did you mean ...`). Guides to what the keys are for: "
        "[Specs](../specs.md).",
        "",
        "## Top-level and sections",
        "",
        table(spec_rows),
        "",
        "## Trial keys (`defaults`, `search`, `--set`)",
        "",
        "Each of these can be set for every trial in `defaults:`, searched under `search:` by its dotted name "
        "(`lora.rank`), or overridden with `sweeper train SPEC --set KEY=VALUE`. `data.*` keys are the spec's "
        f"`data` section above, and can be searched too. Set from the spec's top level instead: "
        f"{', '.join(f'`{name}`' for name in sorted(trial_only - {'threads'}))}; `threads` comes from "
        "`sweep.resources.cpu`.",
        "",
        table(trial_rows),
        "",
        "## A searched parameter (`search: {KEY: ...}`)",
        "",
        "Exactly one of `choice`, `int`, `float`, `loguniform`; `when` makes it conditional.",
        "",
        table(search_rows),
        "",
    ])


def rows(model: type[BaseModel], prefix: str, skip: set[str] = frozenset()) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for each field of `model`, nested sections flattened to dotted keys."""
    found: list[tuple[str, str, str, str]] = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        dotted = f"{prefix}{field.alias or name}"
        section = nested_model(field.annotation)
        if section is not None:
            doc = field.description or first_sentence(section.__doc__ or "")
            found.append((dotted, "section", "", doc))
            found.extend(rows(section, f"{dotted}."))
            continue
        found.append((dotted, type_name(field.annotation), default(field), meaning(field)))
    return found


def nested_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def type_name(annotation: Any) -> str:
    """A short, readable type: `int`, `'time' | 'random'`, `list[str] | None`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(arg) for arg in args)
    if origin is not None:
        inner = ", ".join(type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    return f"`{value!r}`" if value is not PydanticUndefined else ""


def meaning(field: FieldInfo) -> str:
    """The field's description and its bounds (`>= 1`)."""
    bounds = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("pattern", "matches")):
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{sign} `{value}`")
    text = field.description or ""
    return "; ".join(part for part in (text, ", ".join(bounds)) if part)


def table(found: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, value, doc in found:
        doc = doc.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | {kind} | {value} | {doc} |")
    return "\n".join(lines)


# --- the module table and API pages ---------------------------------------------------------------------------------

def first_sentence(doc: str) -> str:
    paragraph = inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ")
    return paragraph.split(". ")[0].rstrip(".")


def module_table() -> str:
    lines = ["# Modules", "",
             "Generated from the code when the site is built: each module of `src/sweeper/` with the first sentence "
             "of its docstring. [How it is built](../architecture.md) says how they fit together.", "",
             "| module | what it is for |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        summary = first_sentence(doc).replace("|", "\\|")
        lines.append(f"| `{path.relative_to(PACKAGE).as_posix()}` | {summary} |")
    return "\n".join(lines) + "\n"


def packages() -> list[str]:
    """`sweeper` and each package below it that has an `__init__.py`, in name order."""
    found = ["sweeper"]
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if init.parent != PACKAGE:
            found.append("sweeper." + ".".join(init.parent.relative_to(PACKAGE).parts))
    return found


def api_pages() -> dict[str, str]:
    pages = {}
    links = ["# API reference", "",
             "Generated from the docstrings by mkdocstrings, one page per package (`sweeper` holds the top-level "
             "modules). The command line is documented by `sweeper --help` and `sweeper COMMAND --help`.", ""]
    for name in packages():
        top = name == "sweeper"
        pages[f"reference/api/{name}.md"] = "\n".join([
            f"# `{name}`", "", f"::: {name}", "    options:",
            f"      show_root_heading: {str(top).lower()}",
            f"      show_submodules: {str(not top).lower()}",
            f"      members: {'false' if top else 'true'}", "",
            *([f"::: sweeper.{path.stem}" for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"]
              if top else []), ""])
        links.append(f"- [`{name}`]({name}.md)")
    pages["reference/api/index.md"] = "\n".join(links) + "\n"
    return pages
