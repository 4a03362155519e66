"""The import graph of `src/sweeper` points one way: each module imports only its own layer and the layers below.

Read with Python's `ast` rather than import-linter: no dependency more, imports inside functions and under
`TYPE_CHECKING` count too (a type is a dependency of the design even where it costs no import at run time), and
the layer table below is the one place that says the order. A module's layer is that of its top-level module or
package (`sweeper.tasks.defects` is in `tasks`). Run as a script (`python tests/test_layers.py`) it prints every
import that points up and every cycle of modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[set[str]] = [  # bottom to top; a module may import its own layer and any below it
    {"errors", "timings", "costs", "folders", "predictions", "direction", "__init__"},
    {"metrics", "methods", "quantization"},
    {"config"},
    {"data"},
    {"tracking", "backbone"},
    {"precision"},
    {"tasks"},
    {"step", "memory", "cache", "machine"},
    {"artifacts"},
    {"baselines", "spec"},
    {"recipe"},
    {"rolling"},
    {"trial"},
    {"recorded", "mining"},
    {"report", "trained"},
    {"sweep"},
    {"cli"},
]


def module_name(path: Path) -> str:
    """`sweeper.tasks.defects` for src/sweeper/tasks/defects.py, `sweeper.tasks` for its `__init__.py`."""
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SOURCE / "sweeper").rglob("*.py"))}


def imports(path: Path, known: set[str]) -> dict[str, int]:
    """The sweeper modules that `path` imports, anywhere in it, with the first line of each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            targets = [name for name in names if name in known] or [node.module]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "sweeper":
                found.setdefault(target, node.lineno)
    return found


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add '{top}' to LAYERS in {Path(__file__).name}")


def graph() -> dict[str, dict[str, int]]:
    found = modules()
    return {name: imports(path, set(found)) for name, path in found.items()}


def upward_imports(edges: dict[str, dict[str, int]]) -> list[str]:
    """'module:line imports target (layer a -> b)' for each import that points to a higher layer."""
    return [f"{module}:{line} imports {target} (layer {layer_of(module)} -> {layer_of(target)})"
            for module, targets in edges.items() for target, line in targets.items()
            if layer_of(target) > layer_of(module)]


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle (each group sorted)."""
    reach: dict[str, set[str]] = {}
    for start in edges:
        seen, todo = set(), [start]
        while todo:
            for target in edges.get(todo.pop(), {}):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        reach[start] = seen
    groups = {frozenset(m for m in reach[start] if start in reach.get(m, set())) | {start}
              for start in edges if start in reach[start]}
    return sorted(sorted(group) for group in groups)


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_import_points_up() -> None:
    upward = upward_imports(graph())
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_modules_import_each_other() -> None:
    found = cycles(graph())
    assert not found, "cycles of imports:\n" + "\n".join(" <-> ".join(group) for group in found)


if __name__ == "__main__":
    edges = graph()
    upward, circles = upward_imports(edges), cycles(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(upward)} pointing up, "
          f"{len(circles)} cycles")
    print("\n".join(upward + [" <-> ".join(group) for group in circles]))
