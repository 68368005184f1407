"""Every command and Python snippet of README.md runs as written.

Shell blocks (```bash, or bare blocks whose lines are commands) run line by line in a temporary
directory holding a copy of examples/: ``ntkdsl ...`` through this Python's ``-m ntkdsl``,
``python ...`` through this Python. Python blocks run in order, as one script, in a subprocess in
another such directory. Lines matching SKIPPED are not run, for the reason given there.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMANDS = ("ntkdsl", "python", "pip", "bash")

# The only lines not run, and why (each must match some line of the README: no stale entries).
SKIPPED = {
    "pip install": "installs packages; the test runs in the environment already installed",
    "python -m venv": "creates the benchmark's environment for neural-tangents",
    "python benchmarks/": "a benchmark: minutes of timing runs, measured separately",
    "python -m pytest": "the test suite itself",
    "bash .ci/run": "installs into a fresh environment and runs the whole suite",
}


def blocks():
    """(first line number, language, text) of each fenced block of README.md."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```", text, re.M | re.S):
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2)))
    return out


def _lines(body: str):
    return [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def kind(language: str, body: str) -> str:
    """"shell", "python" or "text" (a spec listing, a table: not run)."""
    if language == "python":
        return "python"
    if language in ("bash", "sh", "shell"):
        return "shell"
    lines = _lines(body)
    if language == "" and lines and all(line.split()[0] in COMMANDS for line in lines):
        return "shell"
    return "text"


def _skip_reason(line: str):
    return next((why for prefix, why in SKIPPED.items() if line.startswith(prefix)), None)


def shell_lines():
    return [(n, line) for n, language, body in blocks() if kind(language, body) == "shell"
            for line in _lines(body)]


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_readme_has_commands_and_python_and_no_stale_skips():
    kinds = [kind(language, body) for _, language, body in blocks()]
    assert kinds.count("shell") >= 4 and kinds.count("python") >= 4
    lines = [line for _, line in shell_lines()]
    for prefix in SKIPPED:
        assert any(line.startswith(prefix) for line in lines), f"no README line starts with {prefix!r}"
    for _, language, body in blocks():   # a command in a text block would escape the test
        if kind(language, body) == "text":
            assert not any(line.startswith("ntkdsl ") for line in body.splitlines()), body


def test_readme_shell_commands_run(workdir):
    ran = 0
    for n, line in shell_lines():
        if _skip_reason(line):
            continue
        words = shlex.split(line, comments=True)
        assert words[0] in ("ntkdsl", "python"), f"README.md:{n}: cannot run {line!r}"
        argv = [sys.executable, "-m", "ntkdsl", *words[1:]] if words[0] == "ntkdsl" else [sys.executable, *words[1:]]
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README.md block at line {n}: {line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        ran += 1
    assert ran >= 8


def test_readme_python_runs(workdir):
    code = "\n".join(body for _, language, body in blocks() if kind(language, body) == "python")
    script = workdir / "readme_snippets.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
