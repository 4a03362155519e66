"""`sweeper check SPEC`: what a sweep checks before its first trial, without Ray: the spec, its data and split, every
method the search can pick on the backbone's shapes, and what the validation split can resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import SEARCH_SPACES, write_spec
from sweeper.cli import main


def test_a_good_spec_passes_with_its_resolution() -> None:
    code = (f"from sweeper.cli import main; code = main(['check', {str(SEARCH_SPACES / 'smoke.yaml')!r}]); "
            "import sys; print('ray imported:', 'ray' in sys.modules); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resolution: 150 validation commits, 10 defective: differences below about" in out.stdout
    assert "smoke.yaml: ok: jitdp" in out.stdout
    assert "ray imported: False" in out.stdout  # checked without starting, or even importing, Ray


@pytest.mark.parametrize(("changes", "error"), [
    ({"data.split": {"kind": "time", "valid": 1.5}}, "field 'data.split.valid': a share must be above 0 and below 1"),
    ({"search": {"method": {"choice": ["lora"]}, "lora.targets": {"choice": [["nope"]]}}}, "nope"),
])
def test_a_bad_spec_is_one_error_line(changes: dict, error: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(write_spec(tmp_path, "bad", changes))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and error in err and "Traceback" not in err
