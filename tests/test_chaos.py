"""Chaos, small: worker nodes of a local Ray cluster killed again and again during one sweep (`tests/chaos.py`),
each kill when a trial is known to be mid-run (held after an evaluation), so all three kills happen on any machine;
every check must hold. `python bench/chaos.py --kills 10 --trials 20` runs it longer."""

from __future__ import annotations

import pytest

from chaos import run_chaos
from services import MlflowServer


@pytest.mark.slow
def test_sweep_survives_worker_nodes_killed_again_and_again(mlflow_server: MlflowServer,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    outcome = run_chaos(tmp_path_factory.mktemp("chaos"), mlflow_server.uri, trials=2, kills=3, seed=1)
    print("\n" + "\n".join(outcome.lines()))
    assert len(outcome.kills) == 3 and outcome.retries == 3, "each kill of a held trial's node is one retry"
    failed = [check for check in outcome.checks if not check.ok]
    assert not failed, failed
