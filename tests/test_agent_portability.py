"""The device agent stays portable: no Python newer than 3.8 (JetPack 5's) by a static check
(vermin), runs with ai_edge_litert or tflite_runtime, with or without onnxruntime, and a device
lacking the runtime a bench needs gets one line naming the pip command to run.

Devices without some packages are this machine's Python started through a wrapper whose
``sitecustomize`` marks the packages absent (``sys.modules[name] = None``: imports fail and
``importlib.util.find_spec`` says "not installed"), so the agent and its measuring child both
see a device without them.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_edge.devices.agent import AgentSession, agent_source
from ofa_edge.devices.spec import local_device
from ofa_edge.errors import AgentError
from tests.models import conv_model
from tests.test_cli import error_line, run
from tests.test_cpu_identification import DEVICES, PROCFS_ENV
from tests.test_lint import _tool

TFLITE_MODEL = Path(__file__).parent / "data" / "conv8.tflite"  # see data/make_tflite.py
ALL_RUNTIMES = ("onnxruntime", "ai_edge_litert", "tflite_runtime")
VERMIN = ("--no-config-file", "-q", "--violations", "-t=3.8-", "--eval-annotations", "--no-tips")

SITECUSTOMIZE = '''"""TEST DOUBLE of a device without the packages in $OFA_EDGE_TEST_ABSENT."""
import os
import sys

for name in filter(None, os.environ.get("OFA_EDGE_TEST_ABSENT", "").split(",")):
    sys.modules[name] = None
'''
# tflite_runtime as an older device has it: LiteRT's interpreter under the old package name,
# borrowed while ai_edge_litert stays absent for everyone else.
TFLITE_RUNTIME_INIT = '__version__ = "2.14.0-test-double"\n'
TFLITE_RUNTIME_INTERPRETER = '''"""TEST DOUBLE of tflite_runtime.interpreter: ai_edge_litert's Interpreter."""
import sys

del sys.modules["ai_edge_litert"]
try:
    from ai_edge_litert.interpreter import Interpreter
finally:
    for name in [n for n in sys.modules if n.split(".")[0] == "ai_edge_litert"]:
        del sys.modules[name]
    sys.modules["ai_edge_litert"] = None

__all__ = ["Interpreter"]
'''


def device_python(folder: Path, absent: tuple[str, ...], python: str = sys.executable) -> Path:
    """A ``python`` for a local device on which the ``absent`` packages are not installed."""
    site = folder / "site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    script = folder / "python"
    script.write_text(
        "#!/bin/sh\n"
        f"export PYTHONPATH='{site}' OFA_EDGE_TEST_ABSENT='{','.join(absent)}'\n"
        f"exec '{python}' \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def pip_line(*packages: str, python: str = sys.executable) -> str:
    return f"`{python} -m pip install {' '.join(packages)}`"


# --- Python 3.8, statically --------------------------------------------------------------------


def test_agent_needs_no_python_newer_than_3_8() -> None:
    res = subprocess.run(
        [_tool("vermin"), *VERMIN, str(agent_source())], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_the_check_catches_a_3_9_feature(tmp_path: Path) -> None:
    """The same flags fail on code that needs 3.9 (math.lcm), naming it."""
    newer = tmp_path / "agent.py"
    newer.write_text(agent_source().read_text() + "\n\ndef _batch(a, b):\n    return math.lcm(a, b)\n")
    res = subprocess.run([_tool("vermin"), *VERMIN, str(newer)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "math.lcm" in res.stdout, res.stdout + res.stderr


def _python_3_8() -> str | None:
    """A working Python 3.8 on this machine (on PATH or under pyenv), or None."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    for exe in [shutil.which("python3.8"), *sorted(glob.glob(f"{root}/versions/3.8*/bin/python3.8"))]:
        if exe and subprocess.run([exe, "-c", "pass"], capture_output=True, timeout=60).returncode == 0:
            return exe
    return None


def test_agent_runs_on_python_3_8(tmp_path: Path) -> None:
    """The agent itself on a real 3.8 (when this machine has one): hello, a Pi's fingerprint, and
    the pip line a 3.8 device needs for TFLite (tflite-runtime: ai-edge-litert has no 3.8 wheels)."""
    py38 = _python_3_8()
    if py38 is None:
        pytest.skip("no Python 3.8 here (PATH, pyenv): only the static check ran")
    python = device_python(tmp_path / "py38", ALL_RUNTIMES, py38)
    requests = [
        {"id": 1, "op": "hello"},
        {"id": 2, "op": "fingerprint"},
        {"id": 3, "op": "bench", "runtime": "tflite", "models": [{"name": "m", "path": "m.tflite"}]},
        {"id": 4, "op": "shutdown"},
    ]
    res = subprocess.run(
        [str(python), str(agent_source()), "serve"],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, PROCFS_ENV: str(DEVICES["raspberry-pi-4"].write(tmp_path))},
    )
    replies = {r["id"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert replies[1]["result"]["python"].startswith("3.8."), res.stderr
    assert replies[2]["result"]["cpu_model"] == "Cortex-A72", res.stderr
    error = replies[3]["error"]
    assert error["type"] == "RuntimeMissing" and "Python 3.8." in error["message"]
    assert error["message"].endswith(" onnxruntime tflite-runtime`"), error
    assert "ai-edge-litert" not in error["message"], error


# --- runtimes present and absent --------------------------------------------------------------


def test_device_without_runtimes_gets_one_line_naming_the_pip_command(tmp_path: Path) -> None:
    python = device_python(tmp_path / "bare", ALL_RUNTIMES)
    inventory = tmp_path / "devices.toml"
    inventory.write_text(f'[devices.bare]\ntransport = "local"\npython = "{python}"\n')
    model = conv_model(tmp_path / "m.onnx")
    line = error_line(run("bench", "bare", str(model), "--inventory", str(inventory)), 5)
    assert pip_line("onnxruntime", "ai-edge-litert") in line, line
    assert f"this {platform.machine()} device" in line and platform.python_version() in line, line


def test_tflite_runtime_only_device_measures_tflite(tmp_path: Path) -> None:
    """No onnxruntime, no ai_edge_litert: TFLite runs through tflite_runtime; an ONNX bench says
    to install onnxruntime only."""
    python = device_python(tmp_path / "old", ("onnxruntime", "ai_edge_litert"))
    package = python.parent / "site" / "tflite_runtime"
    package.mkdir()
    (package / "__init__.py").write_text(TFLITE_RUNTIME_INIT)
    (package / "interpreter.py").write_text(TFLITE_RUNTIME_INTERPRETER)
    spec = dataclasses.replace(local_device(), python=str(python), workdir=str(tmp_path / "agent"))
    with AgentSession(spec) as session:
        runtimes = session.fingerprint()["runtimes"]
        assert runtimes["tflite_runtime"]["version"] == "2.14.0-test-double", runtimes
        assert "error" in runtimes["ai_edge_litert"] and "error" in runtimes["onnxruntime"], runtimes
        (result,) = session.bench([TFLITE_MODEL], runtime="tflite", min_runs=10, min_seconds=0.05).results
        assert result.error is None and result.runs >= 10 and result.median_ms and result.median_ms > 0
        with pytest.raises(AgentError) as err:
            session.bench([conv_model(tmp_path / "m.onnx")], runtime="onnxruntime")
    message = str(err.value)
    assert "RuntimeMissing" in message and pip_line("onnxruntime") in message and "\n" not in message
