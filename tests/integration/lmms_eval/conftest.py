"""Shared fixtures of the lmms-eval wrapper tests: the local tasks, an offline environment, and
the two command-line runs (one process, two processes) that several tests read.

Every run is the real lmms-eval 0.7.3 on the tiny random checkpoint from ``create_checkpoint``
(the ``tiny_checkpoint`` session fixture of ``tests/conftest.py``), fully offline: the tasks
live in ``tests/data/lmms_tasks`` (jsonl/parquet + PNG files), datasets are cached in a temporary
folder. lmms-eval's CLI exits 0 even when the evaluation failed, so a run is only accepted when
its results JSON exists and the output has no "Error during evaluation".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LMMS_TASKS_DIR = REPO / "tests" / "data" / "lmms_tasks"
TASK_UTILS = LMMS_TASKS_DIR / "tg_llava_local" / "utils.py"
VENV_BIN = Path(sys.executable).parent

GEN_TASK = "tg_llava_local_gen"
MC_TASK = "tg_llava_local_mc"
BAD_TASK = "tg_llava_local_bad"
MULTIROUND_TASK = "tg_llava_local_multiround"
ALL_TASKS = (GEN_TASK, MC_TASK, BAD_TASK, MULTIROUND_TASK)

#: Generous wall-clock limit of one lmms-eval process on 2 shared cores (it imports ~2000 task
#: configs and HF evaluate before doing anything).
CLI_TIMEOUT_S = 480


@dataclass
class LmmsRun:
    """The files of one lmms-eval command-line run."""

    output_dir: Path
    results: dict
    samples: dict[str, list[dict]]
    log: str
    results_dir: Path


def offline_env(cache_dir: Path) -> dict[str, str]:
    """Environment for an lmms-eval subprocess: offline, caches in ``cache_dir``, one thread each.

    One torch thread per process keeps the one- and two-process runs numerically comparable and
    the shared CPU usable.
    """
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(cache_dir / "hf"),
        LMMS_EVAL_DATASETS_CACHE=str(cache_dir / "datasets"),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("LMMS_EVAL_PLUGINS", None)  # registration must come from the entry point alone
    return env


def lmms_args(checkpoint: Path, output_dir: Path, *, model_args: str = "", batch_size: int = 2) -> list[str]:
    """The lmms-eval arguments shared by the command-line runs (all four local tasks)."""
    args = f"pretrained={checkpoint}" + (f",{model_args}" if model_args else "")
    return [
        "--model", "tg_llava",
        "--model_args", args,
        "--tasks", ",".join(ALL_TASKS),
        "--include_path", str(LMMS_TASKS_DIR),
        "--batch_size", str(batch_size),
        "--device", "cpu",
        "--output_path", str(output_dir),
        "--log_samples",
        "--verbosity", "INFO",
    ]  # fmt: skip


def run_lmms(command: list[str], output_dir: Path, cache_dir: Path) -> LmmsRun:
    """Run an lmms-eval command and load its results JSON and samples JSONL files.

    Raises:
        AssertionError: Non-zero exit, an "Error during evaluation" in the output (the CLI exits 0
            then), or not exactly one results file.
    """
    proc = subprocess.run(
        command, env=offline_env(cache_dir), cwd=output_dir.parent, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"lmms-eval exited {proc.returncode}:\n{log[-6000:]}"
    assert "Error during evaluation" not in log, log[-6000:]
    results_files = sorted(output_dir.glob("*/*_results.json"))
    assert len(results_files) == 1, f"expected one results JSON under {output_dir}, got {results_files}\n{log[-4000:]}"
    results_path = results_files[0]
    samples = {}
    for task in ALL_TASKS:
        files = sorted(results_path.parent.glob(f"*_samples_{task}.jsonl"))
        assert len(files) == 1, f"samples of {task}: {files}"
        rows = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines() if line.strip()]
        samples[task] = sorted(rows, key=lambda row: row["doc_id"])
    return LmmsRun(output_dir, json.loads(results_path.read_text(encoding="utf-8")), samples, log, results_path.parent)


def free_port() -> int:
    """An unused TCP port for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def lmms_cache_dir(tmp_path_factory) -> Path:
    """Dataset/HF caches shared by every lmms-eval run of the session."""
    return tmp_path_factory.mktemp("lmms_cache")


@pytest.fixture(scope="session")
def cli_single_run(tiny_checkpoint, tmp_path_factory, lmms_cache_dir) -> LmmsRun:
    """``lmms-eval --model tg_llava ...`` (the console script), one process, batch size 2."""
    output_dir = tmp_path_factory.mktemp("lmms_single") / "out"
    command = [str(VENV_BIN / "lmms-eval"), *lmms_args(Path(tiny_checkpoint), output_dir, model_args="variant=tiny")]
    return run_lmms(command, output_dir, lmms_cache_dir)


@pytest.fixture(scope="session")
def cli_two_process_run(tiny_checkpoint, tmp_path_factory, lmms_cache_dir) -> LmmsRun:
    """The same evaluation under ``torchrun --nproc_per_node 2 -m lmms_eval`` on the CPU."""
    output_dir = tmp_path_factory.mktemp("lmms_two") / "out"
    command = [
        str(VENV_BIN / "torchrun"),
        "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()),
        "-m", "lmms_eval",
        *lmms_args(Path(tiny_checkpoint), output_dir, model_args="variant=tiny"),
    ]  # fmt: skip
    return run_lmms(command, output_dir, lmms_cache_dir)


@pytest.fixture(scope="session")
def task_utils():
    """The local tasks' ``utils`` module, imported by file location as lmms-eval does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tg_llava_local_task_utils", TASK_UTILS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
