"""The predictions file (`predictions.csv`, `tracking.schema.PREDICTIONS_FILE`): the validation predictions of a trial
or a baseline, one row per commit in the validation split's order. `write_predictions` is its one writer (trials,
rolling trials, baselines) and `read_predictions` its one reader (reports, `reproduce`, tests).

    >>> import tempfile; from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "predictions.csv"
    >>> write_predictions(path, SCORES, [("c1", 1, 0.75), ("c2", 0, 0.25)])
    >>> path.read_text()
    'id,label,score\\nc1,1,0.75\\nc2,0,0.25\\n'
    >>> found = read_predictions(path)
    >>> found.task, found.values, found.rows["c2"]
    ('jitdp', [0.75, 0.25], ('0', '0.25'))
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Prediction = float | str  # a defect probability, or a generated message

SCORES = ("id", "label", "score")  # defect prediction: each commit's label and P(defect)
MESSAGES = ("id", "reference", "prediction")  # message generation: each commit's own message and the generated one


@dataclass(frozen=True)
class Predictions:
    """A predictions file read back: its columns, and (truth, prediction) as text by commit id, in file order."""

    columns: tuple[str, ...]
    rows: dict[str, tuple[str, str]]

    @property
    def task(self) -> str:
        return "jitdp" if self.columns[-1] == SCORES[-1] else "cmg"

    @property
    def values(self) -> list[Prediction]:
        """The predictions in file order: defect probabilities (floats) or generated messages."""
        return [float(value) if self.task == "jitdp" else value for _, value in self.rows.values()]

    @property
    def scored(self) -> list[tuple[str, int, float]]:
        """Defect prediction's rows: (commit id, label, score), in file order."""
        return [(id_, int(label), float(score)) for id_, (label, score) in self.rows.items()]


def write_predictions(path: Path, columns: tuple[str, str, str], rows: Iterable[tuple[str, Any, Prediction]]) -> None:
    """`rows` of (commit id, truth, prediction) under `columns` (`SCORES` or `MESSAGES`); floats as `repr` writes
    them, so that they read back exactly."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows((id_, truth, value if isinstance(value, str) else repr(float(value))) for id_, truth, value in rows)


def read_predictions(path: Path) -> Predictions:
    """A predictions file `write_predictions` wrote."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    return Predictions(tuple(header), {row[0]: (row[1], row[2]) for row in rows if len(row) == 3})
