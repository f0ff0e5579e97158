"""``tg-llava-eval train`` checks its inputs before importing torch or DeepSpeed; the DeepSpeed
rule; the atomic-output helpers of ``training/outputs.py`` on plain folders.

The command-line cases run in a fresh interpreter that must exit 2 with one line naming the
argument, and must not have imported torch (or DeepSpeed) by then.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from tg_llava_eval.errors import TGLlavaUsageError
from tg_llava_eval.training.outputs import (
    COMMIT_FILE,
    TRAINER_STATE_NAME,
    commit_final_output,
    last_complete_checkpoint,
    leftovers_in,
    rotate_checkpoints,
    staging_root,
    warn_leftovers_in,
)
from tg_llava_eval.training.preflight import use_deepspeed

#: Runs the CLI, then reports which heavy modules it imported (after the error).
PROBE = (
    "import json, sys\n"
    "from tg_llava_eval.cli.train import main\n"
    "code = main(json.loads(sys.argv[1]))\n"
    "print('IMPORTED', json.dumps([m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules]))\n"
    "sys.exit(code)\n"
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    images = root / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not decoded by the checks")
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A shape."}]
    good = root / "good.json"
    good.write_text(json.dumps([{"id": "a", "image": "a.png", "conversations": turns}]))
    elsewhere = root / "elsewhere.json"
    elsewhere.write_text(json.dumps([{"id": str(i), "image": f"sub/{i}.png", "conversations": turns} for i in range(7)]))
    (root / "dict.json").write_text(json.dumps({"rows": []}))
    (root / "no_rows.json").write_text(json.dumps([{"id": 1, "text": "no conversations"}]))
    return root


CASES = [
    # (argv after the stage, expected text in the one error line)
    (["--variant", "tinny"], "--variant: unknown variant 'tinny' (did you mean tiny"),
    (["--data", "missing.json"], "--data 'missing.json': no such file"),
    (["--data", "{root}/images"], "is a folder, expected a LLaVA conversation JSON file"),
    (["--data", "{root}/dict.json"], "expected a JSON list of rows"),
    (["--data", "{root}/no_rows.json"], "not LLaVA conversation data: none of its 1 rows is usable"),
    (["--data", "{root}/elsewhere.json"], "holds none of the 7 images"),
    (["--images", "{root}/nowhere"], "--images '{root}/nowhere': no such folder"),
    (["--output", "{root}/good.json"], "--output '{root}/good.json': is a file"),
    (["--model", "{root}/images"], "--model '{root}/images': has no config.json"),
    (["--variant", "tg-llava-qwen2-7b"], "--model is required for pretrain of 'tg-llava-qwen2-7b'"),
    (["--resume_from_checkpoint", "last"], "holds no complete checkpoint-N to resume from"),
    (["--resume_from_checkpoint", "{root}/images"], "has no trainer_state.json"),
    (["--no-deepspeed", "--with-deepspeed"], "--no-deepspeed and --with-deepspeed contradict each other"),
    (["--deepspeed", "{root}/missing.json"], "--deepspeed '{root}/missing.json': no such file"),
    (["--from", "{root}"], "--from '{root}': only finetune loads a stage-1 output"),
]


@pytest.mark.parametrize(("extra", "expected"), CASES, ids=[expected[:40] for _, expected in CASES])
def test_bad_input_is_one_line_before_heavy_imports(inputs, extra, expected):
    argv = ["pretrain", "--variant", "tiny", "--data", str(inputs / "good.json"), "--images", str(inputs / "images"),
            "--output", str(inputs / "out")]
    argv += [value.format(root=inputs) for value in extra]
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and expected.format(root=inputs) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout.split("IMPORTED", 1)[1]) == []
    assert not (inputs / "out").exists()


def test_finetune_needs_a_stage1_output(inputs, tiny_checkpoint):
    from tg_llava_eval.cli.train import main

    base = ["finetune", "--variant", "tiny", "--data", str(inputs / "good.json"), "--images", str(inputs / "images"),
            "--output", str(inputs / "out")]
    assert main(base) == 2
    assert main([*base, "--from", str(tiny_checkpoint)]) == 2  # a checkpoint, but no stage-1 adapters


@pytest.mark.parametrize(("forced", "flags", "environ", "launcher", "cuda", "expected"), [
    (None, [], {}, False, False, False),                 # one CPU process: plain Trainer
    (None, [], {"WORLD_SIZE": "2"}, False, False, True),  # torchrun / accelerate with 2 ranks
    (None, [], {"WORLD_SIZE": "1"}, True, False, True),   # the deepspeed launcher
    (None, [], {}, False, True, True),                   # GPUs: the recipe's ZeRO config
    (True, [], {}, False, False, True),                  # --with-deepspeed
    (None, ["--deepspeed", "z.json"], {}, False, False, True),
    (False, [], {"WORLD_SIZE": "8"}, True, True, False),  # --no-deepspeed wins
])
def test_deepspeed_rule(forced, flags, environ, launcher, cuda, expected):
    use, reason = use_deepspeed(forced=forced, training_flags=flags, environ=environ, launched_by_deepspeed=launcher,
                                cuda_available=lambda: cuda)
    assert use is expected and reason


def test_no_deepspeed_with_a_deepspeed_file_is_a_usage_error():
    with pytest.raises(TGLlavaUsageError, match="contradicts --no-deepspeed"):
        use_deepspeed(forced=False, training_flags=["--deepspeed=z.json"], environ={}, launched_by_deepspeed=False,
                      cuda_available=lambda: False)


def _checkpoint(folder, complete=True):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / TRAINER_STATE_NAME).write_text("{}")
    return folder


def test_resume_skips_incomplete_checkpoints_and_temporaries(tmp_path, caplog):
    _checkpoint(tmp_path / "checkpoint-2")
    _checkpoint(tmp_path / "checkpoint-10", complete=False)  # e.g. written by a non-atomic older version
    _checkpoint(staging_root(tmp_path / "checkpoint-12", 4242) / "checkpoint-12")
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
        assert [p.name for p in warn_leftovers_in(tmp_path)] == [".checkpoint-12.tmp-4242"]
    assert "not resuming from" in caplog.text and "checkpoint-10" in caplog.text
    assert "ignoring 1 incomplete save(s)" in caplog.text


def test_rotation_and_final_commit(tmp_path):
    for step in (1, 2, 3):
        _checkpoint(tmp_path / f"checkpoint-{step}")
    assert [p.name for p in rotate_checkpoints(tmp_path, 2)] == ["checkpoint-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    (tmp_path / COMMIT_FILE).write_text("old")
    (tmp_path / "model.safetensors").write_text("old")
    staged = staging_root(tmp_path / "model", 1)
    staged.mkdir()
    with pytest.raises(FileNotFoundError):  # nothing is committed without its config.json
        commit_final_output(staged, tmp_path)
    (staged / "model.safetensors").write_text("new")
    (staged / "guide_tokenizer").mkdir()
    (staged / COMMIT_FILE).write_text("new")
    commit_final_output(staged, tmp_path)
    assert (tmp_path / COMMIT_FILE).read_text() == (tmp_path / "model.safetensors").read_text() == "new"
    assert (tmp_path / "guide_tokenizer").is_dir() and not leftovers_in(tmp_path)
