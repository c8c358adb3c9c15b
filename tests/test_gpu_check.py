"""The GPU check's script in its `--cpu` mode, so that it cannot rot between GPU machines."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Starts processes (`make test-all`; `make test` leaves it out).
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_script_runs_every_method_in_cpu_mode(tmp_path):
    """As on the GPU image, which lacks datasets, gguf, matplotlib, psutil and deepspeed."""
    missing = ["datasets", "gguf", "matplotlib", "psutil", "deepspeed"]
    (tmp_path / "sitecustomize.py").write_text(
        f"import sys\nsys.modules.update(dict.fromkeys({missing!r}))\n"
    )
    output = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(["bash", str(SCRIPT), "--cpu", "--output", str(output)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["device"] == "cpu"
    assert set(report["methods"]) == {"hir", "farl", "ppo"}
    for method in report["methods"].values():
        assert method["sampling_outputs_per_second"] > 0
        assert method["training_examples_per_second"] > 0
    step = report["training_step"]
    assert step["tokens_per_second"] > 0 and step["share_of_bf16_peak"] is None
    assert "torch" in report["versions"]
    assert "| hir |" in run.stdout
    assert "matplotlib is not installed: no plots" in run.stderr
