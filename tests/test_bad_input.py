"""Property-based: random specs and random data lines either load or raise the project's own error,
naming the file, the line and the field; never another exception."""

from __future__ import annotations

import json
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper.data.records import parse_line
from sweeper.errors import DataError, SpecError
from sweeper.spec import load_spec

KEYS = ["name", "task", "data", "backbone", "metric", "mode", "defaults", "search", "sweep", "tracking",
        "path", "sample", "split", "kind", "valid", "test", "max_length", "method", "lr", "epochs", "lora",
        "rank", "targets", "adapter", "placement", "trials", "pruner", "choice", "int", "float", "loguniform",
        "when", "resources", "cpu", "gpu", "lora.rank", "adapter.layers", "layers", "sweep.trials", "bogus"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 1000), st.floats(allow_nan=True),
                    st.text(string.printable, max_size=12), st.sampled_from(["lora", "full", "time", "median", "all"]))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                     max_leaves=20)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(tree=st.dictionaries(st.sampled_from(KEYS), TREES, max_size=8))
def test_random_spec_loads_or_names_file_and_field(tmp_path: Path, tree: dict) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump({"name": "x", **tree} if "name" not in tree else tree))
    try:
        load_spec(path)
    except SpecError as error:
        assert str(error).startswith(str(path)), error
        assert error.field, error


@SETTINGS
@given(content=st.one_of(st.text(max_size=200).map(str.encode), st.binary(max_size=200)))
def test_random_spec_bytes_load_or_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "text.yaml"
    path.write_bytes(content)
    try:
        load_spec(path)
    except SpecError as error:
        assert str(error).startswith(str(path)), error


RECORD = {"id": st.text(max_size=8), "date": st.sampled_from(["2020-01-01T00:00:00+00:00", "yesterday", ""]),
          "message": st.text(max_size=20), "diff": st.sampled_from(["@@ -1 +1 @@\n-a\n+b", "", "  ", "plain"]),
          "label": st.one_of(st.sampled_from([0, 1, 2, -1, True]), st.text(max_size=3), st.none()),
          "features": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), SCALARS, max_size=3))}


@SETTINGS
@given(record=st.fixed_dictionaries({}, optional=RECORD), junk=st.binary(max_size=40), mode=st.integers(0, 2))
def test_random_data_line_parses_or_names_file_line_and_field(record: dict, junk: bytes, mode: int) -> None:
    line = [json.dumps(record).encode(), junk, json.dumps(record).encode()[: len(junk)]][mode]
    try:
        parsed = parse_line(line, "data.jsonl", 7, "jitdp")
    except DataError as error:
        assert error.source == "data.jsonl" and error.line == 7
        assert str(error).startswith("data.jsonl:7: ")
        return
    assert parsed.label in (0, 1) and parsed.diff.strip()
