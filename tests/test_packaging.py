"""The grammar ships inside the wheel and loads from it (importlib.resources, not the source tree)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_grammar_loads_from_a_built_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("ntkdsl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ntkdsl/grammar/ntk.lark" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import ntkdsl, sys; from pathlib import Path;"
        f"assert Path(ntkdsl.__file__).resolve().is_relative_to(Path({str(site)!r}).resolve()), ntkdsl.__file__;"
        "net = ntkdsl.loads('network n(input = 2) { dense(3); relu; dense(1) }');"
        "print(net.ntk([[1.0, 0.0]]).shape)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 1)"
