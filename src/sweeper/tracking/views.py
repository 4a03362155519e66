"""What a user lands on in MLflow's UI: the saved view of a sweep's runs table, and the URLs of its pages.

MLflow's UI keeps a saved view as an experiment tag `mlflow.sharedViewState.<id>`: a JSON envelope (name, times)
around the view's state, with the keys the UI's own "Save view" writes (search facets and table layout; those left
out take the UI's defaults). sweeper saves one per sweep: its runs, best first, with the columns that matter. Sorted
by a metric, the UI lists child runs flat instead of folded under the sweep's run.

    >>> state = sweep_view_state("smoke-1", "auc", "max", ["method", "lr", "lora.rank"])
    >>> state["searchFilter"], state["orderByKey"], state["orderByAsc"]
    ("tags.`sweeper.sweep` = 'smoke-1'", 'metrics.`best_auc`', False)
    >>> state["selectedColumns"][:4]
    ['tags.`sweeper.state`', 'tags.`sweeper.method`', 'metrics.`best_auc`', 'params.`lr`']
    >>> runs_page("http://127.0.0.1:5000", "3", sweep_view_id("smoke-1"))
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=sweep-smoke-1'
"""

from __future__ import annotations

import json
import re
from typing import Any

from sweeper.direction import Direction
from sweeper.tracking.schema import BEST_PREFIX, SWEEP_VIEW_PREFIX, VIEW_URL_KEY, Tag

# The UI's side bar is in GenAI or model-training mode, from this URL parameter (else what the browser last used).
WORKFLOW_URL_KEY, TRAINING_WORKFLOW = "workflowType", "machine_learning"

KEEP_VIEWS = 10  # sweeper's views kept per experiment, newest first (the UI lists 40 at most)


def column(kind: str, name: str) -> str:
    """A runs-table column as the UI names it: `metrics.`best_auc``, `params.`lr``, `attributes.`Dataset``."""
    return f"{kind}.`{name}`"


def sweep_view_id(sweep_id: str) -> str:
    """The id of a sweep's view (it goes into a tag key and a URL)."""
    return SWEEP_VIEW_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "-", sweep_id)


def sweep_view_state(sweep_id: str, metric: str, mode: str, searched: list[str]) -> dict[str, Any]:
    """The sweep's runs sorted by its metric, best first; columns: state, method, the metric, the searched params,
    trainable parameters, train time and the data."""
    best = column("metrics", BEST_PREFIX + metric)
    return {
        "searchFilter": f"tags.`{Tag.SWEEP}` = '{sweep_id}'",
        "orderByKey": best,
        "orderByAsc": Direction(mode) is Direction.MIN,
        "selectedColumns": [column("tags", Tag.STATE), column("tags", Tag.METHOD), best,
                            *(column("params", key) for key in searched if key != "method"),
                            column("metrics", "trainable_params"), column("metrics", "train_seconds"),
                            column("attributes", "Dataset")],
    }


def view_envelope(name: str, state: dict[str, Any], now_ms: int) -> str:
    """The tag value the UI reads: name, creation and update times (ms), and the state as a JSON string."""
    return json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)})


def views_to_drop(tags: dict[str, str], prefix: str, keep: int = KEEP_VIEWS) -> list[str]:
    """The keys of sweeper's views beyond the newest `keep`."""
    created = {key: json.loads(value).get("createdAt", 0) for key, value in tags.items() if key.startswith(prefix)}
    return sorted(created, key=created.__getitem__, reverse=True)[keep:]


def runs_page(base_url: str, experiment_id: str, view_id: str | None = None) -> str:
    """The URL of an experiment's runs table in the UI's model-training mode, opened on a saved view if given."""
    page = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_URL_KEY}={TRAINING_WORKFLOW}"
    return f"{page}&{VIEW_URL_KEY}={view_id}" if view_id else page


def run_page(experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """A run's page (or one of its artifacts) as a link relative to the UI, for Markdown notes the UI renders."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}" + (f"/artifacts/{artifact}" if artifact else "")
    return f"{page}?{WORKFLOW_URL_KEY}={TRAINING_WORKFLOW}"
