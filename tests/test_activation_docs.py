"""docs/activations.md is generated from the registry and must be current; the CLI lists every row."""

import subprocess
import sys
from pathlib import Path

from ntkdsl.activations import REGISTRY
from ntkdsl.activations.catalog import markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "activations.md"


def test_activation_doc_is_current():
    assert DOC.read_text() == markdown(), "regenerate: python -m ntkdsl.activations.catalog > docs/activations.md"


def test_cli_lists_every_activation():
    out = subprocess.run([sys.executable, "-m", "ntkdsl", "activations"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for row in REGISTRY:
        assert f"\n{row.name}" in "\n" + out.stdout
    assert "(alias swish)" in out.stdout
