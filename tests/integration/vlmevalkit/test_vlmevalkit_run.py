"""End-to-end runs of the real VLMEvalKit through ``run.py`` on a tiny random TG-LLaVA checkpoint.

Every run is a subprocess (``python run.py ...`` or ``torchrun ... run.py ...``) on tiny local
datasets in a fresh ``$LMUData``; assertions read the files VLMEvalKit writes (it exits 0 even
when a dataset fails). Each test runs on both VLMEvalKit layouts (``vlmevalkit_layouts.py``: PyPI's
ms-vlmeval and an upstream git checkout). Runs, shared by the tests of this module:

* MCQ via ``--data`` (+ two tables of bad rows) — one process;
* Y/N and VQA via ``--config`` — one process, a preset entry and a ``"class": "TGLLaVA"`` entry;
* resume: a run killed after VLMEvalKit's first checkpoint dump, then run again;
* data parallel: ``torchrun --nproc-per-node 2`` on CPU, rank 1 held back past a second boundary,
  compared with the single-process run;
* the MCQ run of both layouts compared with each other.

Decoding is cut to 4 new tokens with VLMEvalKit's ``--max-tokens`` (a random model rarely stops).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("vlmeval")

from vlmevalkit_layouts import LAYOUTS  # noqa: E402

from tg_llava_eval.model_wrappers import vlmevalkit as wrapper  # noqa: E402

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[3]
RUN_PY = REPO_ROOT / "run.py"
_spec = importlib.util.spec_from_file_location("tiny_datasets", REPO_ROOT / "tests" / "data" / "vlmeval" / "tiny_datasets.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

MODEL = "tg_llava"
MAX_TOKENS = ["--max-tokens", "4"]
RESUME_NAME = "tg_tiny_resume"
RESUME_ROWS = 48
#: VLMEvalKit dumps a rank's answers every 10 rows (``vlmeval/inference.py``)
DUMP_EVERY = 10
RUN_TIMEOUT_S = 600
CALL_LINE = re.compile(r"TG-LLaVA generate: (\S+) call \d+")


@pytest.fixture(scope="module")
def lmu_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("LMUData")
    tiny.write_all(root)
    tiny.write_mcq(root, RESUME_NAME, n_images=RESUME_ROWS // 4, questions_per_image=4)
    return root


def base_env(lmu_data: Path) -> dict[str, str]:
    """The environment of a toolkit run on the package layout (ms-vlmeval)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MMEVAL_ROOT", "OPENAI_API_KEY", "WORLD_SIZE", "RANK")}
    env.update(LMUData=str(lmu_data), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def layout_env(layout: str, lmu_data: Path, request) -> dict[str, str]:
    """:func:`base_env`, plus what makes ``import vlmeval`` load the upstream checkout for ``checkout``."""
    env = base_env(lmu_data)
    if layout == "checkout":
        env.update(request.getfixturevalue("vlmevalkit_checkout").env)
    return env


@pytest.fixture(scope="module", params=LAYOUTS)
def layout(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def toolkit_env(layout, lmu_data, request) -> dict[str, str]:
    return layout_env(layout, lmu_data, request)


def _run(args, env, cwd, launcher=(sys.executable, str(RUN_PY))) -> subprocess.CompletedProcess:
    result = subprocess.run([*launcher, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    result.log = result.stdout + result.stderr
    return result


def _predictions(work_dir: Path, dataset: str, model: str = MODEL) -> pd.DataFrame:
    path = work_dir / model / f"{model}_{dataset}.xlsx"
    assert path.is_file(), f"no prediction file {path}"
    return pd.read_excel(path)


def _status(work_dir: Path, model: str = MODEL) -> dict:
    return json.loads((work_dir / model / "status.json").read_text())


#: The MCQ run of each layout, made once (the cross-layout test compares both).
_MCQ_RUNS: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}


def _mcq_run(layout: str, tmp_path_factory, tiny_checkpoint, env) -> tuple[Path, subprocess.CompletedProcess]:
    if layout not in _MCQ_RUNS:
        work = tmp_path_factory.mktemp(f"work_mcq_{layout}")
        result = _run(["--model", MODEL, "--model-path", tiny_checkpoint, "--judge", "exact_matching", *MAX_TOKENS,
                       "--data", tiny.MCQ_NAME, tiny.BAD_ROWS_NAME, tiny.BAD_PATHS_NAME, "--work-dir", work], env, work)
        _MCQ_RUNS[layout] = work, result
    return _MCQ_RUNS[layout]


@pytest.fixture(scope="module")
def mcq_run(layout, tmp_path_factory, tiny_checkpoint, toolkit_env):
    return _mcq_run(layout, tmp_path_factory, tiny_checkpoint, toolkit_env)


def _expected_toolkit(layout: str, request) -> dict[str, str]:
    """The manifest's toolkit fields a run of ``layout`` must write."""
    if layout == "package":
        return {"toolkit_distribution": "ms-vlmeval", "toolkit_version": importlib.metadata.version("ms-vlmeval")}
    checkout = request.getfixturevalue("vlmevalkit_checkout")
    return {"toolkit_distribution": "vlmeval", "toolkit_version": checkout.version, "toolkit_commit": checkout.commit}


def test_mcq_via_data(mcq_run, layout, lmu_data, tiny_checkpoint, request):
    work, result = mcq_run
    truth = pd.read_csv(lmu_data / f"{tiny.MCQ_NAME}.tsv", sep="\t")
    predictions = _predictions(work, tiny.MCQ_NAME)
    assert sorted(predictions["index"]) == sorted(truth["index"]), result.log[-3000:]
    assert not any(wrapper.is_failure(p) for p in predictions["prediction"]), predictions["prediction"].tolist()
    scores = pd.read_csv(work / MODEL / f"{MODEL}_{tiny.MCQ_NAME}_acc.csv")
    assert "Overall" in scores.columns and 0.0 <= float(scores["Overall"].iloc[0]) <= 1.0
    assert _status(work)["datasets"][tiny.MCQ_NAME]["status"] == "done"
    manifest = json.loads((work / MODEL / "tg_llava_run.json").read_text())
    assert manifest["schema"] == "tg_llava_run/1" and manifest["model_name"] == MODEL
    assert (manifest["variant"], manifest["llm"]) == ("tiny", "tiny-Qwen2")
    assert manifest["checkpoint"] == str(Path(tiny_checkpoint).resolve())
    expected = _expected_toolkit(layout, request)
    assert {key: manifest.get(key) for key in expected} == expected
    assert "toolkit_commit" in expected or "toolkit_commit" not in manifest
    assert f"{MODEL} x {tiny.MCQ_NAME}: 0 of {len(truth)} rows failed" in result.log


def test_both_layouts_give_the_same_predictions_and_scores(tmp_path_factory, tiny_checkpoint, lmu_data, request):
    """The same checkpoint and data through ms-vlmeval and through an upstream checkout: the same
    predictions and scores, and ``collect`` names each run's toolkit release."""
    from tg_llava_eval.results import ParseContext, collect

    runs = {layout: _mcq_run(layout, tmp_path_factory, tiny_checkpoint, layout_env(layout, lmu_data, request))
            for layout in LAYOUTS}
    for dataset in (tiny.MCQ_NAME, tiny.BAD_ROWS_NAME, tiny.BAD_PATHS_NAME):
        package, checkout = (_predictions(runs[layout][0], dataset).set_index("index")["prediction"] for layout in LAYOUTS)
        assert package.to_dict() == checkout.to_dict(), dataset
        package, checkout = (pd.read_csv(runs[layout][0] / MODEL / f"{MODEL}_{dataset}_acc.csv") for layout in LAYOUTS)
        pd.testing.assert_frame_equal(package, checkout)
    releases = {}
    for layout in LAYOUTS:
        records = collect([runs[layout][0]], ParseContext()).records
        assert {r.dataset for r in records} >= {tiny.MCQ_NAME}, records
        releases[layout] = {r.toolkit_version for r in records}
    checkout = request.getfixturevalue("vlmevalkit_checkout")
    assert releases == {"package": {f"ms-vlmeval {importlib.metadata.version('ms-vlmeval')}"},
                        "checkout": {f"vlmeval {checkout.version} (git {checkout.commit[:8]})"}}


def test_bad_rows_are_recorded_and_counted(mcq_run):
    work, result = mcq_run
    rows = _predictions(work, tiny.BAD_ROWS_NAME).set_index("index")["prediction"]
    assert len(rows) == 7
    failed = {int(i) for i, p in rows.items() if wrapper.is_failure(p)}
    assert failed == set(tiny.BAD_ROWS), rows.to_dict()
    assert "its image cannot be decoded" in rows[2]
    assert "row 3 of tg_tiny_bad_rows: the question is empty" in rows[3]
    assert re.search(r"request tg_tiny_bad_rows/5\.png: the prompt has \d+ LLM tokens .* max_length=\d+", rows[5]), rows[5]
    # the 600-word question is answered, its text guide cut to the guide tower's 77 positions
    assert re.search(r"guide text has \d+ tokens; keeping the first 76 .*Describe colour colour", result.log)
    paths = _predictions(work, tiny.BAD_PATHS_NAME).set_index("index")["prediction"]
    assert {int(i) for i, p in paths.items() if wrapper.is_failure(p)} == set(tiny.BAD_PATHS), paths.to_dict()
    assert "does_not_exist.png does not exist" in paths[1]
    assert "corrupt.png" in paths[2]
    # the run went on: later rows answered, every dataset evaluated, counts logged
    for dataset in (tiny.BAD_ROWS_NAME, tiny.BAD_PATHS_NAME):
        assert (work / MODEL / f"{MODEL}_{dataset}_acc.csv").is_file()
    assert f"{MODEL} x {tiny.BAD_ROWS_NAME}: 3 of 7 rows failed" in result.log
    assert f"{MODEL} x {tiny.BAD_PATHS_NAME}: 2 of 4 rows failed" in result.log
    assert "TG-LLaVA could not answer a row of tg_tiny_bad_rows (3 failed of" in result.log


def test_yorn_and_vqa_via_config(tmp_path, tiny_checkpoint, toolkit_env):
    config = tiny.write_config(
        tmp_path / "eval.json",
        {MODEL: {}, "tg_class_entry": {"class": "TGLLaVA", "model_path": str(tiny_checkpoint), "max_new_tokens": 4}},
        {tiny.YORN_NAME: "ImageYORNDataset", tiny.VQA_NAME: "ImageVQADataset"},
    )
    result = _run(["--config", config, "--model-path", tiny_checkpoint, "--judge", "exact_matching", *MAX_TOKENS,
                   "--work-dir", tmp_path], toolkit_env, tmp_path)
    for model in (MODEL, "tg_class_entry"):
        for dataset, score_file in ((tiny.YORN_NAME, "score"), (tiny.VQA_NAME, "acc")):
            predictions = _predictions(tmp_path, dataset, model)
            assert sorted(predictions["index"]) == list(range(6)), result.log[-3000:]
            assert not any(wrapper.is_failure(p) for p in predictions["prediction"])
            scores = pd.read_csv(tmp_path / model / f"{model}_{dataset}_{score_file}.csv")
            assert "Overall" in scores.columns, scores
        assert json.loads((tmp_path / model / "tg_llava_run.json").read_text())["variant"] == "tiny"


def _run_py_module():
    from tg_llava_eval.model_wrappers import vlmevalkit_run

    return vlmevalkit_run


def test_our_flags_are_checked_before_vlmevalkit_runs(tmp_path, tiny_checkpoint, caplog, monkeypatch):
    """In-process (no VLMEvalKit run starts): exit 2 with a clear message, nothing written."""
    monkeypatch.delenv("MMEVAL_ROOT", raising=False)
    run_py = _run_py_module()
    ours, rest = run_py.split_argv(["--model", "tg_llava", "--model-path", "D", "--data", "x", "--variant", "tiny"])
    assert (ours.model_path, ours.variant, rest) == ("D", "tiny", ["--model", "tg_llava", "--data", "x"])
    cases = {
        "TG-LLaVA-Qwen2-7B needs a checkpoint": ["--model", "TG-LLaVA-Qwen2-7B", "--data", tiny.MCQ_NAME],
        "is not a tg-llava-qwen2-7b checkpoint": ["--model", "TG-LLaVA-Qwen2-7B", "--model-path", tiny_checkpoint,
                                                   "--data", tiny.MCQ_NAME],
        "contradicts --model TG-LLaVA-Qwen2-7B": ["--model", "TG-LLaVA-Qwen2-7B", "--model-path", tiny_checkpoint,
                                                   "--variant", "tiny", "--data", tiny.MCQ_NAME],
        "has no config.json: not a checkpoint folder": ["--model", "tg_llava", "--model-path", tmp_path,
                                                        "--data", tiny.MCQ_NAME],
    }
    for message, argv in cases.items():
        caplog.clear()
        assert run_py.main([*map(str, argv), "--work-dir", str(tmp_path / "work")]) == 2, message
        assert message in caplog.text
    assert not (tmp_path / "work").exists()


def _kill_after_a_complete_dump(process: subprocess.Popen, dump: Path) -> dict:
    """SIGKILL ``process`` (a crash mid-dataset) once ``dump`` holds a complete pickle; returns it.

    VLMEvalKit writes its partial-results pickle in place (``pickle.dump(data, open(path, "wb"))``),
    so the file exists empty or half-written for a moment at every save. The process is stopped
    (SIGSTOP) while the file is read, so it cannot begin a rewrite between a good read and the kill.
    ``dump`` is the model folder's file; an upstream checkout writes it in the run folder below
    (``<model>/T<time>/``), which is looked in too.
    """
    from vlmeval.smp import load

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        found = [dump] if dump.exists() else sorted(dump.parent.glob(f"T*/{dump.name}"))
        if found:
            dump = found[0]
            process.send_signal(signal.SIGSTOP)
            try:
                saved = load(str(dump))
            except (EOFError, pickle.UnpicklingError, ValueError):  # caught mid-write: let it finish
                process.send_signal(signal.SIGCONT)
            else:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return saved
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise AssertionError(f"the first run ended (or timed out) before {dump} held a complete pickle")


def test_resume_does_not_reinfer_finished_rows(tmp_path, tiny_checkpoint, toolkit_env):
    args = ["--model", MODEL, "--model-path", tiny_checkpoint, "--data", RESUME_NAME, "--judge", "exact_matching",
            *MAX_TOKENS, "--work-dir", tmp_path, "--verbose"]
    dump = tmp_path / MODEL / f"01_{RESUME_NAME}.pkl"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, str(RUN_PY), *map(str, args)], cwd=tmp_path, env=toolkit_env,
                                 stdout=log, stderr=subprocess.STDOUT)
        saved = _kill_after_a_complete_dump(first, dump)
    first_calls = len(CALL_LINE.findall((tmp_path / "first.log").read_text()))
    assert DUMP_EVERY <= len(saved) < RESUME_ROWS, (len(saved), first_calls)
    assert not (tmp_path / MODEL / f"{MODEL}_{RESUME_NAME}.xlsx").exists()

    second = _run([*args, "--reuse"], toolkit_env, tmp_path)
    second_calls = CALL_LINE.findall(second.log)
    assert len(second_calls) == RESUME_ROWS - len(saved), second.log[-3000:]
    assert first_calls >= len(saved)
    predictions = _predictions(tmp_path, RESUME_NAME)
    assert sorted(predictions["index"]) == list(range(RESUME_ROWS))
    for index, answer in saved.items():  # finished rows kept as they were
        assert predictions.set_index("index").loc[int(index), "prediction"] == answer


#: A runner whose rank 1 reaches VLMEvalKit's run-id choice RANK_DELAY_S after rank 0 (past a
#: second boundary): VLMEvalKit names an upstream run folder after the second it starts.
DELAYED_RUNNER = """
import os, sys, time
from tg_llava_eval.model_wrappers import vlmevalkit_run

agree = vlmevalkit_run.agree_on_run_id

def delayed(runner):
    if os.environ["RANK"] == "1":
        time.sleep({delay})
    return agree(runner)

vlmevalkit_run.agree_on_run_id = delayed
sys.exit(vlmevalkit_run.main())
"""
RANK_DELAY_S = 1.5


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_two_processes_match_one(mcq_run, tmp_path, tiny_checkpoint, toolkit_env):
    """Both ranks write into one run folder even when they start in different seconds."""
    single_dir, _ = mcq_run
    script = tmp_path / "delayed_run.py"
    script.write_text(DELAYED_RUNNER.format(delay=RANK_DELAY_S))
    torchrun = (str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2", str(script))
    result = _run(["--model", MODEL, "--model-path", tiny_checkpoint, "--data", tiny.MCQ_NAME, "--judge", "exact_matching",
                   *MAX_TOKENS, "--work-dir", tmp_path], toolkit_env, tmp_path, launcher=torchrun)
    assert "rank 1 of 2 synchronises over a gloo process group" in result.log, result.log[-3000:]
    both = _predictions(tmp_path, tiny.MCQ_NAME).set_index("index")["prediction"]
    single = _predictions(single_dir, tiny.MCQ_NAME).set_index("index")["prediction"]
    assert both.to_dict() == single.to_dict()
    assert len(CALL_LINE.findall(result.log)) == 0  # not verbose: no per-call lines
    assert (tmp_path / MODEL / f"{MODEL}_{tiny.MCQ_NAME}_acc.csv").is_file()
