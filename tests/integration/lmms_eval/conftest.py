"""Fixtures of the lmms-eval wrapper tests: the two command-line runs (one process, two
processes) that several tests read, and the dataset cache of the in-process runs.

Every run is the real lmms-eval 0.7.3 on the tiny random checkpoint from ``create_checkpoint``
(the ``tiny_checkpoint`` session fixture of ``tests/conftest.py``), fully offline: the tasks live
in ``tests/data/lmms_tasks`` (jsonl/parquet + PNG files), datasets are cached in a temporary
folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tg_lmms_helpers import VENV_BIN, LmmsProcess, LmmsRun, finish_lmms, free_port, lmms_args, start_lmms, stop


@pytest.fixture(scope="session")
def lmms_cache_dir(tmp_path_factory) -> Path:
    """Dataset/HF caches of the in-process lmms-eval runs."""
    return tmp_path_factory.mktemp("lmms_cache")


@pytest.fixture(scope="session")
def _cli_processes(tiny_checkpoint, tmp_path_factory) -> Iterator[dict[str, LmmsProcess]]:
    """Start both command-line runs at once (one uses 1 core, the other 2 processes): together
    they take about as long as the two-process run alone. Each has its own dataset cache."""
    checkpoint = Path(tiny_checkpoint)
    single = tmp_path_factory.mktemp("lmms_single")
    two = tmp_path_factory.mktemp("lmms_two")
    torchrun = [
        str(VENV_BIN / "torchrun"),
        "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()),
        "-m", "lmms_eval",
    ]  # fmt: skip
    runs = {
        # the console script, one process
        "single": start_lmms(
            [str(VENV_BIN / "lmms-eval"), *lmms_args(checkpoint, single / "out", model_args="variant=tiny")],
            single / "out",
            single / "cache",
        ),
        # the same evaluation in two processes on the CPU, with the response cache (one file per
        # rank, relative to the run's working folder ``two``; test_lmms_cache.py reads them)
        "two": start_lmms(
            [*torchrun, *lmms_args(checkpoint, two / "out", model_args="variant=tiny,cache_dir=responses")],
            two / "out",
            two / "cache",
        ),
    }
    yield runs
    for run in runs.values():  # a run no selected test waited for
        stop(run)


@pytest.fixture(scope="session")
def cli_single_run(_cli_processes) -> LmmsRun:
    """``lmms-eval --model tg_llava ...`` (the console script), one process, batch size 2."""
    return finish_lmms(_cli_processes["single"])


@pytest.fixture(scope="session")
def cli_two_process_run(_cli_processes) -> LmmsRun:
    """The same evaluation under ``torchrun --nproc_per_node 2 -m lmms_eval`` on the CPU, with
    ``cache_dir=responses`` (the files are in ``output_dir.parent / "responses"``)."""
    return finish_lmms(_cli_processes["two"])
