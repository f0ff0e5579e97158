"""The wrapper's response cache (``--model_args cache_dir=DIR``) with the real lmms-eval 0.7.3.

* **Kill and resume** (the real console script, all four local tasks, the tiny checkpoint): a run
  is SIGKILLed once its cache file holds :data:`KILL_AFTER_ANSWERS` answers (the test polls the
  SQLite file read-only); the same command started again computes only the requests not in the
  file, and its results JSON, samples JSONL files, run manifest and cache file equal those of an
  uninterrupted run. Two uninterrupted runs of lmms-eval 0.7.3 differ in the fields of
  :data:`RUN_STAMPS` only (found by comparing two such runs): the times it stamps (``date``,
  ``start_time``, ``end_time``, ``total_evaluation_time_seconds``, the date prefix of every file
  name, the manifest's ``created``) and the memory addresses in the ``<function ... at 0x...>``
  reprs of the task functions in ``configs``. Everything else is compared byte for byte.
  The two runs use the same relative ``--output_path`` and ``cache_dir`` from their own working
  folders, so the command line lmms-eval records is the same.
* **No stale answers** (in-process ``simple_evaluate``): the same evaluation again is answered
  from the cache; a changed ``--gen_kwargs``, ``conv_template`` or checkpoint file computes again.
* **``model_args`` checks** before anything is loaded: one line naming the argument.

Model calls are counted from the wrapper's per-call log line ``tg_llava: response cache on rank
R: C <type> requests from the cache, N computed``; the subprocesses get that INFO line through a
``sitecustomize`` that only configures logging of the ``tg_llava_eval`` logger.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from tg_lmms_helpers import (
    CLI_TIMEOUT_S,
    GEN_TASK,
    LMMS_TASKS_DIR,
    MC_TASK,
    VENV_BIN,
    LmmsProcess,
    finish_lmms,
    lmms_args,
    start_lmms,
    stop,
)

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.inference.response_cache import cache_file_name

pytestmark = pytest.mark.e2e

#: Answers in the cache file when the run is killed: past the multi-round requests (6 rounds),
#: inside the log-likelihood ones (16), before the 10 answered generations.
KILL_AFTER_ANSWERS = 8
#: How often the test looks at the cache file of the run it is going to kill.
POLL_S = 0.02
#: Same relative paths in every run's own working folder (the recorded command is the same).
OUTPUT = "out"
CACHE = "cache"
MODEL_ARGS = f"cache_dir={CACHE}"
#: What lmms-eval 0.7.3 (and the run manifest) stamp on a run: lines of the JSON files whose value
#: is the time of the run, and the addresses in the task functions' reprs.
RUN_STAMPS = (
    re.compile(r'^(\s*"(?:date|start_time|end_time|total_evaluation_time_seconds|created)": ).*?(,?)$', re.MULTILINE),
    re.compile(r"( at 0x)[0-9a-f]+(>)"),
)
#: File names start with lmms-eval's date stamp ``YYYYMMDD_HHMMSS_``.
DATE_PREFIX = re.compile(r"^\d{8}_\d{6}_")
COUNTS = re.compile(r"tg_llava: response cache on rank 0: (\d+) (\S+) requests from the cache, (\d+) computed")

#: Logging set-up of the lmms-eval subprocesses (lmms-eval logs through loguru and leaves the
#: standard logging unconfigured, so the wrapper's INFO lines would not be shown).
SITECUSTOMIZE = """\
import logging
import sys

_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logging.getLogger("tg_llava_eval").addHandler(_handler)
logging.getLogger("tg_llava_eval").setLevel(logging.INFO)
"""


def _start(checkpoint: Path, workdir: Path) -> LmmsProcess:
    """The console script with relative output and cache folders, run in ``workdir``."""
    command = [str(VENV_BIN / "lmms-eval"), *lmms_args(checkpoint, Path(OUTPUT), model_args=MODEL_ARGS)]
    return start_lmms(command, workdir / OUTPUT, workdir / "hf_cache")


def _stored(database: Path, *, read_only: bool) -> dict[str, int]:
    """Answers per request type in a cache file (empty while it does not exist or has no table)."""
    if not database.is_file():
        return {}
    uri = f"file:{database}?mode=ro" if read_only else f"file:{database}"
    connection = sqlite3.connect(uri, uri=True, timeout=1.0)
    try:
        return dict(connection.execute("SELECT request_type, count(*) FROM responses GROUP BY request_type"))
    except sqlite3.OperationalError:  # created but no table yet, or locked by the writer's commit
        return {}
    finally:
        connection.close()


def _rows(database: Path) -> set[tuple[str, str, str]]:
    connection = sqlite3.connect(database)
    try:
        return set(connection.execute("SELECT key, request_type, response FROM responses"))
    finally:
        connection.close()


def _kill_when_cached(run: LmmsProcess, database: Path, answers: int) -> dict[str, int]:
    """SIGKILL the run (its whole process group) once ``database`` holds ``answers`` answers.

    Returns:
        The answers per request type the killed run left (read after SQLite rolled back any
        interrupted transaction, as the next run's opening does).
    """
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while sum(_stored(database, read_only=True).values()) < answers:
        assert run.process.poll() is None, f"the run ended before it was killed:\n{run.log_path.read_text()[-4000:]}"
        assert time.monotonic() < deadline, "the run to kill never cached enough answers"
        time.sleep(POLL_S)
    os.killpg(run.process.pid, signal.SIGKILL)
    run.process.wait()
    return _stored(database, read_only=False)


def _counts(log: str) -> dict[str, tuple[int, int]]:
    """``request type -> (from the cache, computed)`` of the wrapper's per-call log lines."""
    return {kind: (int(cached), int(computed)) for cached, kind, computed in COUNTS.findall(log)}


def _files(results_dir: Path) -> dict[str, str]:
    """The run's output files, by name without the date prefix, with the run stamps blanked."""
    files = {}
    for path in sorted(results_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        for stamp in RUN_STAMPS:
            text = stamp.sub(r"\1<stamp>\2", text)
        files[DATE_PREFIX.sub("", path.name)] = text
    return files


def test_a_killed_run_resumes_with_only_the_unanswered_requests(tiny_checkpoint, tmp_path, monkeypatch):
    hook = tmp_path / "logging_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    database = cache_file_name(0, 1)
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"

    whole = _start(tiny_checkpoint, whole_dir)
    killed = _start(tiny_checkpoint, killed_dir)
    try:
        left = _kill_when_cached(killed, killed_dir / CACHE / database, KILL_AFTER_ANSWERS)
        (killed_dir / "killed_run.log").write_text(killed.log_path.read_text(encoding="utf-8", errors="replace"))
        resumed_run = _start(tiny_checkpoint, killed_dir)  # the same command again
        uninterrupted = finish_lmms(whole)
        resumed = finish_lmms(resumed_run)
    finally:
        stop(whole)
        stop(killed)

    whole_rows = _rows(whole_dir / CACHE / database)
    assert 0 < sum(left.values()) < len(whole_rows), (left, len(whole_rows))

    # Only the unanswered requests were computed.
    first, again = _counts(uninterrupted.log), _counts(resumed.log)
    assert set(first) == {"generate_until", "loglikelihood", "generate_until_multi_round"}, uninterrupted.log[-3000:]
    assert set(again) == set(first), resumed.log[-3000:]
    for kind, (cached, computed) in first.items():
        assert cached == 0, (kind, first)
        assert again[kind] == (left.get(kind, 0), computed - left.get(kind, 0)), (kind, left, first, again)
    assert sum(computed for _, computed in again.values()) > 0

    # The same answers and the same files.
    assert _rows(killed_dir / CACHE / database) == whole_rows
    whole_files, resumed_files = _files(uninterrupted.results_dir), _files(resumed.results_dir)
    assert sorted(resumed_files) == sorted(whole_files)
    assert {"results.json", "tg_llava_run.json", f"samples_{MC_TASK}.jsonl"} <= set(whole_files)
    for name, text in whole_files.items():
        assert resumed_files[name] == text, name


# ---------------------------------------------------------------------- in-process: no stale answers

IN_PROCESS_TASKS = (GEN_TASK, MC_TASK)
#: Requests of the two tasks: 8 generations, 4 documents x 4 options.
EXPECTED_REQUESTS = {"generate_until": 8, "loglikelihood": 16}


@pytest.fixture(scope="module")
def evaluate(lmms_cache_dir):
    """``evaluate(checkpoint, model_args, gen_kwargs)`` -> (lmms-eval results, cache counts)."""
    os.environ.setdefault("LMMS_EVAL_DATASETS_CACHE", str(lmms_cache_dir / "datasets"))
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    manager = TaskManager(verbosity="WARNING", include_path=str(LMMS_TASKS_DIR), include_defaults=False)

    def run(caplog, checkpoint: Path, model_args: str, gen_kwargs: str | None = None):
        caplog.clear()
        with caplog.at_level("INFO", logger="tg_llava_eval.model_wrappers.lmms_eval"):
            results = simple_evaluate(
                model="tg_llava",
                model_args=f"pretrained={checkpoint},{model_args}",
                tasks=list(IN_PROCESS_TASKS),
                batch_size=2,
                device="cpu",
                task_manager=manager,
                log_samples=True,
                bootstrap_iters=0,
                gen_kwargs=gen_kwargs,
                verbosity="WARNING",
            )
        return results, _counts(caplog.text)

    return run


def _answers(results: dict) -> dict[str, list]:
    return {task: [s["filtered_resps"] for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])]
            for task in IN_PROCESS_TASKS}  # fmt: skip


def _computed_everything(counts):
    return counts == {kind: (0, total) for kind, total in EXPECTED_REQUESTS.items()}


def test_a_changed_setting_or_checkpoint_never_reuses_an_answer(evaluate, tiny_checkpoint, tmp_path, caplog):
    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    cache = f"cache_dir={tmp_path / 'cache'}"
    first, counts = evaluate(caplog, checkpoint, cache)
    assert _computed_everything(counts), counts

    again, counts = evaluate(caplog, checkpoint, cache)
    assert counts == {kind: (total, 0) for kind, total in EXPECTED_REQUESTS.items()}, counts
    assert _answers(again) == _answers(first)

    # a generation setting: the generations are computed again, the scores are not generations
    shorter, counts = evaluate(caplog, checkpoint, cache, gen_kwargs="max_new_tokens=2")
    assert counts == {"generate_until": (0, 8), "loglikelihood": (16, 0)}, counts
    assert all(sample["token_counts"][0]["output_tokens"] <= 2 for sample in shorter["samples"][GEN_TASK])

    # a model setting
    _, counts = evaluate(caplog, checkpoint, f"{cache},conv_template=qwen_2")
    assert _computed_everything(counts), counts

    # the checkpoint's weights changed in place (same path)
    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    name = next(n for n in sorted(tensors) if tensors[n].is_floating_point())
    tensors[name] = tensors[name] + 1
    save_file(tensors, weights, metadata={"format": "pt"})
    _, counts = evaluate(caplog, checkpoint, cache)
    assert _computed_everything(counts), counts


# ---------------------------------------------------------------------- model_args checks


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "pretrained='{missing}': no such folder"),
        ("file", "pretrained='{file}': is a file"),
        ("empty", "pretrained='{empty}': has no config.json"),
        ("cache_is_file", "cache_dir='{file}' is a file"),
        ("cache_under_file", "cache_dir='{file}/sub': cannot create the folder"),
    ],
)
def test_model_args_are_checked_before_loading(case, needle, tiny_checkpoint, tmp_path):
    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    paths = {"missing": tmp_path / "no_such_dir", "file": tmp_path / "a_file", "empty": tmp_path / "empty"}
    paths["file"].write_text("x")
    paths["empty"].mkdir()
    kwargs = {
        "missing": {"pretrained": str(paths["missing"])},
        "file": {"pretrained": str(paths["file"])},
        "empty": {"pretrained": str(paths["empty"])},
        "cache_is_file": {"pretrained": str(tiny_checkpoint), "cache_dir": str(paths["file"])},
        "cache_under_file": {"pretrained": str(tiny_checkpoint), "cache_dir": f"{paths['file']}/sub"},
    }[case]
    with pytest.raises(TGLlavaConfigError) as error:
        TGLlava(device="cpu", **kwargs)
    message = str(error.value)
    assert "\n" not in message and message.startswith("model_args ")
    assert needle.format(**{k: str(v) for k, v in paths.items()}) in message, message


# ---------------------------------------------------------------------- several processes

#: Answers of the four local tasks: 3 documents x 2 rounds, 4 documents x 4 options, and the 10 of
#: 14 generations that succeed (4 bad documents fail and are not stored).
ANSWERS = {"generate_until_multi_round": 6, "loglikelihood": 16, "generate_until": 10}


def test_each_rank_writes_its_own_cache_file(cli_two_process_run):
    """``torchrun --nproc_per_node 2`` with ``cache_dir`` (the session's two-process run): one
    intact file per rank, together holding every answer of the run."""
    folder = cli_two_process_run.output_dir.parent / "responses"
    names = sorted(path.name for path in folder.glob("*.sqlite"))
    assert names == [cache_file_name(0, 2), cache_file_name(1, 2)]
    union: set[tuple[str, str]] = set()
    for name in names:
        connection = sqlite3.connect(folder / name)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            connection.close()
        rows = _rows(folder / name)
        assert rows, name
        union |= {(key, kind) for key, kind, _ in rows}
    assert {kind: sum(1 for _, k in union if k == kind) for kind in ANSWERS} == ANSWERS
