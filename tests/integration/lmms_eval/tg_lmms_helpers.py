"""Helpers of the lmms-eval wrapper tests: the local tasks, an offline environment for lmms-eval
subprocesses, and loading one run's results JSON and samples JSONL files.

lmms-eval's CLI exits 0 even when the evaluation failed, so a run is only accepted when its
results JSON exists and the output has no "Error during evaluation".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class LmmsProcess:
    """An lmms-eval command started in the background (its output goes to ``log_path``)."""

    process: subprocess.Popen
    output_dir: Path
    log_path: Path


def start_lmms(command: list[str], output_dir: Path, cache_dir: Path) -> LmmsProcess:
    """Start an lmms-eval command without waiting (the two CLI runs overlap on the 2 cores)."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = output_dir.parent / "lmms_eval.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            env=offline_env(cache_dir),
            cwd=output_dir.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stop() ends torchrun's workers too
        )
    return LmmsProcess(process, output_dir, log_path)


def stop(run: LmmsProcess) -> None:
    """Kill a started run (and the workers it spawned) if it is still running."""
    if run.process.poll() is None:
        os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()


def finish_lmms(run: LmmsProcess) -> LmmsRun:
    """Wait for a started run and load its results JSON and samples JSONL files.

    Raises:
        AssertionError: Timeout, non-zero exit, an "Error during evaluation" in the output (the
            CLI exits 0 then), or not exactly one results file / samples file per task.
    """
    try:
        returncode = run.process.wait(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(run)
        raise AssertionError(f"lmms-eval ran over {CLI_TIMEOUT_S} s:\n{run.log_path.read_text()[-4000:]}") from None
    log = run.log_path.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, f"lmms-eval exited {returncode}:\n{log[-6000:]}"
    assert "Error during evaluation" not in log, log[-6000:]
    results_files = sorted(run.output_dir.glob("*/*_results.json"))
    assert len(results_files) == 1, f"expected one results JSON under {run.output_dir}, got {results_files}\n{log[-4000:]}"
    results_path = results_files[0]
    samples = {}
    for task in ALL_TASKS:
        files = sorted(results_path.parent.glob(f"*_samples_{task}.jsonl"))
        assert len(files) == 1, f"samples of {task}: {files}"
        rows = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines() if line.strip()]
        samples[task] = sorted(rows, key=lambda row: row["doc_id"])
    return LmmsRun(run.output_dir, json.loads(results_path.read_text(encoding="utf-8")), samples, log, results_path.parent)


def free_port() -> int:
    """An unused TCP port for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
