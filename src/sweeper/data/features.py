"""The 14 expert change metrics of JIT-DP as a matrix, and a scaler fitted on the training split only.

Kamei et al.'s metrics, in JIT-Defects4J's order: size (la, ld), diffusion (nf, ns, nd, entropy),
history (ndev, lt, nuc, age), experience (exp, rexp, sexp) and purpose (fix, 0/1).

    >>> from sweeper.data.records import read_records
    >>> matrix = feature_matrix(read_records("bundled:jitdp").records[:100])
    >>> scaler = FeatureScaler().fit(matrix[:80])            # the training rows only
    >>> FeatureScaler.from_json(scaler.to_json()).transform(matrix[80:]).shape
    (20, 14)

The shared JIT-Defects4J file holds values a log cannot take as they are: `lt` (lines in the files before
the change) is negative in 341 of 5,465 rows (down to -1557) and `age` (days since the files last changed)
in 7 (down to -138), both impossible as measured quantities (artefacts of the metric extraction). They are
kept, not clipped or dropped: the transform is the signed log, sign(x) * log(1 + |x|), which is log(1 + x)
(the usual transform of Kamei et al. and JIT-Fine) for every non-negative value, keeps the order of the
negative ones, and brings the heavy tails (la up to 4042, ld up to 7657) to a few units. Then each column
is standardised with the training rows' mean and standard deviation. JIT-Fine scaled each split with its
own statistics, which leaks the validation set's distribution into its inputs; here validation and test
rows are transformed with the training statistics, never refitted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sweeper.data.records import CommitRecord
from sweeper.errors import DataError

FEATURE_NAMES = ("la", "ld", "nf", "ns", "nd", "entropy", "ndev", "lt", "nuc", "age", "exp", "rexp", "sexp", "fix")
SCALER_KIND = "signed_log1p+standardise"


def feature_matrix(records: Sequence[CommitRecord], names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """The records' features as an (n, len(names)) float matrix, columns in `names` order.

    A record without a feature (or with a value that is not finite) raises `DataError` naming the file, the
    line and the field, e.g. `data.jsonl:12: field 'features.lt': missing ...`.

        >>> from datetime import datetime
        >>> record = CommitRecord("p@1", datetime(2020, 1, 1), "fix", "+x", features={"la": 3.0, "ld": 1.0})
        >>> feature_matrix([record], ["la", "ld"]).tolist()
        [[3.0, 1.0]]
    """
    matrix = np.empty((len(records), len(names)), dtype=np.float64)
    for row, record in enumerate(records):
        for column, name in enumerate(names):
            value = record.features.get(name)
            if value is None or not math.isfinite(value):
                problem = ("missing" if value is None else f"not a finite number ({value})")
                have = (f"; the record has {sorted(record.features)}" if record.features
                        else "; the record has no features")
                raise DataError(record.source or f"record {record.id}", record.line or None, f"features.{name}",
                                f"{problem}{have} (expert features need all of {', '.join(names)})")
            matrix[row, column] = value
    return matrix


def has_features(records: Sequence[CommitRecord], names: Sequence[str] = FEATURE_NAMES) -> bool:
    """Whether every record carries every one of `names`."""
    return all(name in record.features for record in records for name in names)


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): log(1 + x) for x >= 0, defined and order-keeping for negative x."""
    return np.sign(values) * np.log1p(np.abs(values))


@dataclass
class FeatureScaler:
    """Signed log, then standardisation with statistics of the rows it was fitted on (the training split).

    `to_json` writes its statistics as plain JSON (saved beside a trial's weights, so predict and export
    scale new commits exactly as training did); `from_json` reads them back. No pickle.

        >>> scaler = FeatureScaler(names=("la",)).fit(np.array([[0.0], [np.e - 1]]))
        >>> scaler.mean, scaler.scale
        ([0.5], [0.5])
        >>> scaler.transform(np.array([[np.e - 1]])).tolist()
        [[1.0]]
    """

    names: tuple[str, ...] = FEATURE_NAMES
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    rows: int = 0  # training rows the statistics come from

    def fit(self, matrix: np.ndarray) -> FeatureScaler:
        """Learn the mean and standard deviation (n, not n - 1, as scikit-learn's StandardScaler) of each
        log-transformed column; a constant column gets scale 1 (it becomes 0, not NaN)."""
        logged = signed_log1p(self._check(matrix))
        if len(logged) == 0:
            raise ValueError("cannot fit a FeatureScaler on no rows")
        std = logged.std(axis=0)
        self.mean = logged.mean(axis=0).tolist()
        self.scale = np.where(std > 0, std, 1.0).tolist()
        self.rows = len(logged)
        return self

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """The scaled matrix; the statistics do not change (validation rows never refit them)."""
        if not self.mean:
            raise ValueError("FeatureScaler.transform before fit: fit it on the training split first")
        return (signed_log1p(self._check(matrix)) - np.asarray(self.mean)) / np.asarray(self.scale)

    def to_json(self) -> str:
        """The statistics as JSON; floats are written exactly (shortest repr), so `from_json` gives the same outputs."""
        return json.dumps({"kind": SCALER_KIND, "names": list(self.names), "mean": self.mean, "scale": self.scale,
                           "rows": self.rows})

    @classmethod
    def from_json(cls, text: str) -> FeatureScaler:
        """A scaler from `to_json`'s text."""
        data = json.loads(text)
        if data.get("kind") != SCALER_KIND:
            raise ValueError(f"not a FeatureScaler's JSON (kind {data.get('kind')!r}, expected {SCALER_KIND!r})")
        if not len(data["names"]) == len(data["mean"]) == len(data["scale"]):
            raise ValueError("FeatureScaler JSON: names, mean and scale differ in length")
        return cls(tuple(data["names"]), [float(v) for v in data["mean"]], [float(v) for v in data["scale"]],
                   int(data["rows"]))

    def _check(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.names):
            raise ValueError(f"expected a matrix of {len(self.names)} columns ({', '.join(self.names)}), "
                             f"got shape {matrix.shape}")
        return matrix


def count_added_lines(diff: str) -> int:
    """Lines a unified diff adds (`+` lines inside hunks, blank ones included; `+++` file headers are not).

    The fallback for `la` when a record has no features. On a diff cut short (`[diff truncated]`) it counts
    only what is left.

        >>> count_added_lines("--- a/x\\n+++ b/x\\n@@ -1 +1,2 @@\\n-old\\n+new\\n+\\n")
        2
    """
    count, in_hunk = 0, False
    for line in diff.split("\n"):
        if line.startswith("diff --git"):
            in_hunk = False
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            count += 1
    return count
