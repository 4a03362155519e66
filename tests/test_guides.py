"""The docs are followed as written: each guide's ```python blocks run in order, as one script, and the README's
annotated spec and core commands are the ones the code accepts.

Each guide runs in a fresh interpreter, so what it registers (a method, a task) cannot leak into other tests.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.cli import parser
from sweeper.config import TrialConfig, known_keys
from sweeper.spec import Spec, load_spec

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))


def fenced(text: str, language: str) -> list[str]:
    """The text's ```LANGUAGE blocks, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)


def test_blocks_are_found() -> None:
    """The extraction itself: a guide's fenced blocks, other languages and prose left out."""
    text = "Intro\n\n```python\na = 1\n```\n\n```bash\nls\n```\n\n```python\nb = a + 1\n```\n"
    assert fenced(text, "python") == ["a = 1\n", "b = a + 1\n"]
    assert GUIDES, "no guides found: docs/guides/*.md"


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES, ids=[guide.stem for guide in GUIDES])
def test_guide_runs(guide: Path, tmp_path: Path) -> None:
    blocks = fenced(guide.read_text(encoding="utf-8"), "python")
    assert blocks, f"{guide.name} has no ```python block to run"
    script = tmp_path / f"{guide.stem}.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{guide.name}'s code failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def test_readme_spec_is_valid(tmp_path: Path) -> None:
    """The README's annotated spec, and every whole spec the docs show, is a spec the code accepts."""
    specs = fenced((ROOT / "README.md").read_text(encoding="utf-8"), "yaml")
    assert len(specs) == 1, "the README shows one annotated spec"
    pages = sorted((ROOT / "docs").rglob("*.md"))
    whole = [block for page in pages for block in fenced(page.read_text(encoding="utf-8"), "yaml")
             if block.startswith("name:")]
    assert whole, "the docs show no whole spec (a ```yaml block starting with name:)"
    for number, text in enumerate(specs + whole):
        path = tmp_path / f"shown-{number}.yaml"
        path.write_text(text, encoding="utf-8")
        assert load_spec(path).search, f"{path.name} searches nothing:\n{text}"


def test_documented_keys_exist() -> None:
    """Each key in the first column of a docs table of keys (`lora.rank`, `data.split.folds`) is one a spec takes."""
    keys = known_keys(Spec) | known_keys(TrialConfig) | {"data." + key for key in known_keys(TrialConfig)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for table in re.findall(r"^\| key \| meaning \|\n\|---\|---\|\n((?:\|.*\n)+)", text, re.MULTILINE):
            named = re.findall(r"`([a-z_.]+)`", "\n".join(row.split("|")[1] for row in table.splitlines()))
            unknown = sorted(set(named) - keys)
            assert named and not unknown, f"{page.name}: keys a spec does not take: {unknown}"


def test_readme_commands_exist() -> None:
    """Each `sweeper COMMAND` the README lists is a command of the CLI."""
    commands = {name for action in parser()._actions if isinstance(action, argparse._SubParsersAction)
                for name in action.choices}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(?:git show HEAD \| )?sweeper (\w+)", "\n".join(fenced(readme, "bash")), re.MULTILINE))
    assert listed and listed <= commands, f"not commands: {sorted(listed - commands)}"
