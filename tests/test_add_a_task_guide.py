"""docs/guides/add-a-task.md is followed as written: its Python blocks, run in order in one namespace, register a
task and train one trial with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeper.tasks import TASKS

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "add-a-task.md"

pytestmark = pytest.mark.slow  # trains one small trial: ~10 s


def test_the_guide_registers_a_task_and_trains_a_trial_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 3, f"{GUIDE}: expected 3 python blocks, found {len(blocks)}"
    namespace: dict = {"__name__": "guide"}
    try:
        for block in blocks:
            exec(compile(block, str(GUIDE), "exec"), namespace)
        assert TASKS["large_change"] is namespace["LargeChange"]
        assert namespace["result"].metrics["auc"] >= 0 and "validation commits scored" in capsys.readouterr().out
    finally:
        TASKS.pop("large_change", None)
