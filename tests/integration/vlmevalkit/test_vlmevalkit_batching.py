"""Look-ahead batching through the real VLMEvalKit: batch 8 answers exactly as batch 1, row by row.

Runs (subprocesses of ``run.py`` as in ``test_vlmevalkit_run.py``, whose helpers are reused), each
shared by several tests:

* ``reference``: one process, a ``--config`` with two ``"class": "TGLLaVA"`` models, batch 1 and
  the default batch size (8), over MCQ, Y/N, VQA, bad-row, bad-path, mixed (multi-image rows among
  single-image rows) and text-only tables, and the resume table;
* ``torchrun``: ``torchrun --nproc-per-node 2`` with ``--batch-size 8`` on the preset, via ``--config``;
* resume: a batch-8 run killed after VLMEvalKit's first complete dump, then run again with ``--reuse``.

One in-process test drives VLMEvalKit's own ``infer_data_job`` to count vision-tower calls (an
engine counter a subprocess cannot report). Decoding is cut to 4 new tokens.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vlmeval")

from tg_llava_eval.model_wrappers import vlmevalkit as wrapper  # noqa: E402
from tg_llava_eval.model_wrappers.vlmevalkit_batching import DEFAULT_BATCH_SIZE  # noqa: E402

pytestmark = pytest.mark.e2e

_spec = importlib.util.spec_from_file_location("vlmevalkit_run_helpers", Path(__file__).with_name("test_vlmevalkit_run.py"))
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
tiny = helpers.tiny

MAX_NEW_TOKENS = 4
MIXED_NAME = "tg_tiny_batch_mixed"
TEXT_NAME = "tg_tiny_batch_text"
RESUME_NAME = "tg_tiny_batch_resume"
#: Enough rows that a batch-8 run is still running when VLMEvalKit's first dumps land.
RESUME_ROWS = 240
#: The mixed table: rows cycle over this many images (so later batches reuse earlier batches' images)...
MIXED_IMAGES = 5
MIXED_ROWS = 20
#: ...and these rows carry two images (TG-LLaVA answers one image per question: they fail alone).
MULTI_IMAGE_ROWS = (6, 13)
TEXT_ROWS = 10
B1, B8 = "tg_b1", "tg_b8"
#: Every table of the reference run, with its ``--config`` dataset class.
DATASETS = {
    tiny.MCQ_NAME: "CustomMCQDataset", tiny.YORN_NAME: "ImageYORNDataset", tiny.VQA_NAME: "ImageVQADataset",
    tiny.BAD_ROWS_NAME: "CustomMCQDataset", tiny.BAD_PATHS_NAME: "CustomMCQDataset",
    MIXED_NAME: "CustomMCQDataset", TEXT_NAME: "CustomTextMCQDataset", RESUME_NAME: "CustomMCQDataset",
}
#: The tables of the torchrun run: the three kinds of the issue plus multi-image and text-only rows.
TORCHRUN_DATASETS = (tiny.MCQ_NAME, tiny.YORN_NAME, tiny.VQA_NAME, MIXED_NAME, TEXT_NAME)


def write_mixed(root: Path) -> Path:
    """MCQ rows cycling over :data:`MIXED_IMAGES` images, rows :data:`MULTI_IMAGE_ROWS` with two images."""
    rows = tiny.mcq_rows(n_images=MIXED_ROWS, questions_per_image=1)
    for row in rows:
        index = int(row["index"])
        if index in MULTI_IMAGE_ROWS:
            row["image"] = repr([tiny.image_b64(index), tiny.image_b64(index + 1)])
        elif index >= MIXED_IMAGES:
            row["image"] = str(index % MIXED_IMAGES)  # a reference to the row that holds the image
    return tiny._write(root, MIXED_NAME, rows)


def write_text_only(root: Path) -> Path:
    """MCQ rows without any image column (VLMEvalKit's ``CustomTextMCQDataset``)."""
    rows = tiny.mcq_rows(n_images=TEXT_ROWS, questions_per_image=1)
    for row in rows:
        row.pop("image")
    return tiny._write(root, TEXT_NAME, rows)


@pytest.fixture(scope="module")
def lmu_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("LMUData")
    tiny.write_all(root)
    write_mixed(root)
    write_text_only(root)
    tiny.write_mcq(root, RESUME_NAME, n_images=RESUME_ROWS // 4, questions_per_image=4)
    return root


@pytest.fixture(scope="module")
def toolkit_env(lmu_data) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MMEVAL_ROOT", "OPENAI_API_KEY", "WORLD_SIZE", "RANK")}
    env.update(LMUData=str(lmu_data), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def _class_entry(checkpoint, **keywords) -> dict:
    return {"class": wrapper.CLASS_NAME, "model_path": str(checkpoint), "max_new_tokens": MAX_NEW_TOKENS, **keywords}


def _by_index(work: Path, dataset: str, model: str) -> dict[int, str]:
    frame = helpers._predictions(work, dataset, model)
    return {int(i): str(p) for i, p in zip(frame["index"], frame["prediction"])}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_checkpoint, toolkit_env):
    """Batch 1 and the default batch size in one process, every table."""
    work = tmp_path_factory.mktemp("work_reference")
    config = tiny.write_config(work / "eval.json", {B1: _class_entry(tiny_checkpoint, batch_size=1),
                                                    B8: _class_entry(tiny_checkpoint)}, DATASETS)
    result = helpers._run(["--config", config, "--judge", "exact_matching", "--work-dir", work], toolkit_env, work)
    return work, result


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_batch_8_predictions_equal_batch_1(reference, dataset):
    work, result = reference
    one, eight = _by_index(work, dataset, B1), _by_index(work, dataset, B8)
    assert one == eight, result.log[-3000:]
    if dataset not in (tiny.BAD_ROWS_NAME, tiny.BAD_PATHS_NAME, MIXED_NAME):
        assert not any(wrapper.is_failure(p) for p in one.values()), one


def test_bad_and_multi_image_rows_fail_alone_inside_a_batch(reference):
    work, _ = reference
    for dataset, bad in ((tiny.BAD_ROWS_NAME, set(tiny.BAD_ROWS)), (tiny.BAD_PATHS_NAME, set(tiny.BAD_PATHS)),
                         (MIXED_NAME, set(MULTI_IMAGE_ROWS))):
        eight = _by_index(work, dataset, B8)
        assert {i for i, p in eight.items() if wrapper.is_failure(p)} == bad, eight
    mixed = _by_index(work, MIXED_NAME, B8)
    assert all("single-image model; this row has 2 images" in mixed[i] for i in MULTI_IMAGE_ROWS), mixed
    assert len(_by_index(work, TEXT_NAME, B8)) == TEXT_ROWS  # text-only rows answered


def test_manifests_record_the_batch_size(reference):
    work, _ = reference
    for model, size in ((B1, 1), (B8, DEFAULT_BATCH_SIZE)):
        assert json.loads((work / model / "tg_llava_run.json").read_text())["batch_size"] == size


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_two_processes_at_batch_8_match_batch_1(reference, tmp_path, tiny_checkpoint, toolkit_env):
    torchrun = (str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2", str(helpers.RUN_PY))
    config = tiny.write_config(tmp_path / "eval.json", {helpers.MODEL: {}}, {name: DATASETS[name] for name in TORCHRUN_DATASETS})
    result = helpers._run(["--config", config, "--model-path", tiny_checkpoint, "--batch-size", "8", "--judge", "exact_matching",
                           "--max-tokens", MAX_NEW_TOKENS, "--work-dir", tmp_path], toolkit_env, tmp_path, launcher=torchrun)
    assert "rank 1 of 2 synchronises over a gloo process group" in result.log, result.log[-3000:]
    for dataset in TORCHRUN_DATASETS:
        assert _by_index(tmp_path, dataset, helpers.MODEL) == _by_index(reference[0], dataset, B1), dataset
    assert json.loads((tmp_path / helpers.MODEL / "tg_llava_run.json").read_text())["batch_size"] == 8


def test_kill_and_resume_at_batch_8_match_batch_1(reference, tmp_path, tiny_checkpoint, toolkit_env):
    args = ["--model", helpers.MODEL, "--model-path", tiny_checkpoint, "--data", RESUME_NAME, "--batch-size", "8",
            "--judge", "exact_matching", "--max-tokens", MAX_NEW_TOKENS, "--work-dir", tmp_path, "--verbose"]
    dump = tmp_path / helpers.MODEL / f"01_{RESUME_NAME}.pkl"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, str(helpers.RUN_PY), *map(str, args)], cwd=tmp_path, env=toolkit_env,
                                 stdout=log, stderr=subprocess.STDOUT)
        saved = helpers._kill_after_a_complete_dump(first, dump)
    assert helpers.DUMP_EVERY <= len(saved) < RESUME_ROWS, len(saved)

    second = helpers._run([*args, "--reuse"], toolkit_env, tmp_path)
    assert len(helpers.CALL_LINE.findall(second.log)) == RESUME_ROWS - len(saved), second.log[-3000:]
    assert f"resumes at shard row {len(saved)}" in second.log  # the first batch starts at the first missing row
    resumed = _by_index(tmp_path, RESUME_NAME, helpers.MODEL)
    assert resumed == _by_index(reference[0], RESUME_NAME, B1)
    assert all(resumed[int(index)] == answer for index, answer in saved.items())


def test_a_bad_batch_size_stops_run_py_before_vlmevalkit(tmp_path, tiny_checkpoint, caplog, monkeypatch):
    """In process: exit status 2, the flag named, nothing written."""
    from tg_llava_eval.model_wrappers import vlmevalkit_run

    monkeypatch.delenv("MMEVAL_ROOT", raising=False)
    argv = ["--model", helpers.MODEL, "--model-path", str(tiny_checkpoint), "--data", tiny.MCQ_NAME,
            "--batch-size", "0", "--work-dir", str(tmp_path / "work")]
    assert vlmevalkit_run.main(argv) == 2
    assert "--batch-size: batch_size must be a positive integer, got 0" in caplog.text
    assert not (tmp_path / "work").exists()


def test_vision_cache_works_across_batches(tiny_checkpoint, lmu_data, tmp_path, monkeypatch):
    """In process, VLMEvalKit's own inference loop: the tower runs once per distinct image at any batch size."""
    from vlmeval.dataset import build_dataset
    from vlmeval.inference import infer_data_job

    monkeypatch.setenv("LMUData", str(lmu_data))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    answers, tower_calls, hits = {}, {}, {}
    for batch_size in (1, 8):
        model = wrapper.TGLLaVA(str(tiny_checkpoint), max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size, device="cpu")
        name = f"b{batch_size}"
        (tmp_path / name).mkdir()  # run.py's <work-dir>/<model>/
        infer_data_job(model, work_dir=str(tmp_path / name), model_name=name, dataset=build_dataset(MIXED_NAME))
        answers[batch_size] = _by_index(tmp_path, MIXED_NAME, name)
        tower_calls[batch_size], hits[batch_size] = model.engine.tower_calls, model.engine.cache.hits
        assert model.loop_stats.batches == (MIXED_ROWS if batch_size == 1 else -(-MIXED_ROWS // batch_size))
    assert answers[1] == answers[8]
    assert tower_calls == {1: MIXED_IMAGES, 8: MIXED_IMAGES}
    assert hits[8] > 0  # batches 2 and 3 find the images batch 1 ran through the tower
