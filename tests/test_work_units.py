"""The xdist work units: modules reading the tiny sweep form one unit, and units start longest first."""

from __future__ import annotations

from collections import OrderedDict

from work_units import longest_first, module_group, unit_seconds


def test_modules_reading_the_tiny_sweep_are_one_unit_and_others_their_own() -> None:
    assert module_group("tests/test_sweep.py") == module_group("tests/test_ui.py") == "tiny-sweep"
    assert module_group("tests/test_chaos.py") == "tests/test_chaos.py"


def test_units_start_longest_first_and_unrecorded_ones_keep_their_order() -> None:
    seconds = unit_seconds({"tests/test_sweep.py": 30.0, "tests/test_ui.py": 50.0, "tests/test_chaos.py": 70.0,
                            "tests/test_gone.py": 500.0})  # a module that no longer exists counts for nothing
    assert seconds == {"tiny-sweep": 80.0, "tests/test_chaos.py": 70.0}
    queue = OrderedDict((unit, {}) for unit in ("a", "tests/test_chaos.py", "b", "tiny-sweep"))
    longest_first(queue, seconds)
    assert list(queue) == ["tiny-sweep", "tests/test_chaos.py", "a", "b"]
