"""Docstring examples (`--doctest-modules` on the package) run in a fresh temporary folder, so an example that
writes files (MLflow's ./mlruns, say) leaves nothing in the checkout."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def doctests_in_a_temporary_folder(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
