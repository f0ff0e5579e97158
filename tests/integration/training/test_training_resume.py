"""A training run SIGKILLed again and again, restarted with the same command, ends bit-identical.

``test_killed_runs_resume_to_bit_identical_weights`` (about a minute: six short processes of the
tiny preset on CPU, plain Trainer): one uninterrupted 6-step run, then the *same command* in another
output folder, killed with SIGKILL

1. at a deterministic point of a checkpoint save (``checkpoint-staged:2``: checkpoint-2 fully
   written in its temporary folder, not yet renamed into place),
2. while an old checkpoint is being rotated out (``checkpoint-rotating:2``),
3. at a random moment from outside (``os.kill`` after a random delay once a checkpoint exists),
4. in the middle of committing the final output (``final-committing``: config.json removed, half
   the new files renamed in),

and started a fifth time to the end. After every kill the output holds only complete
``checkpoint-N`` folders and either a complete final model or none (no ``config.json``); the
restarts name the temporaries the killed runs left and ignore them; the final weights (every
tensor of ``model.safetensors`` and of the stage-1 adapter files) equal the uninterrupted run's bit
for bit. The kill points are the test hook of :mod:`tg_llava_eval.training.outputs`.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
from tg_llava_eval.training.outputs import (
    COMMIT_FILE,
    KILL_AT_ENV,
    MANIFEST_NAME,
    REPORT_NAME,
    TRAINER_STATE_NAME,
    checkpoint_dirs,
    leftovers_in,
)

#: Steps of the run, and a checkpoint every step (at most two kept, so rotation happens).
STEPS = 6
#: Per-process time limit (seconds): generous for a loaded 2-core machine.
TIMEOUT = 600
#: The random external kill: how long to wait for a first checkpoint, and the delay range after it.
FIRST_CHECKPOINT_WAIT = 300
RANDOM_DELAY = (0.0, 0.6)
POLL = 0.02
ADAPTER_FILES = ("projector.safetensors", "text_guided_mask.safetensors", "detail_perceiver.safetensors")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
ENV.pop(KILL_AT_ENV, None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("resume") / "data", seed=3, n_train_stage1=16,
                                      n_train_stage2=4, n_test=1, image_size=56, text_only_fraction=0.0)


def _command(dataset, output: pathlib.Path) -> list[str]:
    """The one command every attempt runs (the recipe's cosine schedule and warmup included)."""
    return [sys.executable, "-m", "tg_llava_eval.cli.train", "pretrain", "--variant", "tiny",
            "--data", str(dataset.stage1_json), "--images", str(dataset.image_dir), "--output", str(output),
            "--max_steps", str(STEPS), "--save_steps", "1", "--save_total_limit", "2",
            "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--bf16", "False",
            "--gradient_checkpointing", "False", "--disable_tqdm", "True", "--dataloader_num_workers", "0"]


def _run(command: list[str], log: pathlib.Path, kill_at: str | None = None) -> int:
    env = dict(ENV, **({KILL_AT_ENV: kill_at} if kill_at else {}))
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=TIMEOUT)
    log.write_text(result.stdout)
    return result.returncode


def _run_killed_from_outside(command: list[str], output: pathlib.Path, log: pathlib.Path, rng: random.Random) -> int:
    """Start the command, SIGKILL it a random moment after its first new checkpoint appears."""
    before = {p.name for p in checkpoint_dirs(output)} | {p.name for p in leftovers_in(output)}
    with log.open("w") as stream:
        process = subprocess.Popen(command, env=ENV, stdout=stream, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + FIRST_CHECKPOINT_WAIT
        while process.poll() is None and time.monotonic() < deadline:
            if {p.name for p in (*checkpoint_dirs(output), *leftovers_in(output))} - before:
                break
            time.sleep(POLL)
        time.sleep(rng.uniform(*RANDOM_DELAY))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        return process.wait(timeout=TIMEOUT)


def _assert_consistent(output: pathlib.Path) -> None:
    """Only complete checkpoints under their own names; a complete final model or none."""
    for folder in checkpoint_dirs(output):
        assert (folder / TRAINER_STATE_NAME).is_file(), folder
        load_file(str(folder / "model.safetensors"))
        assert json.loads((folder / MANIFEST_NAME).read_text())["groups"], folder
    if (output / COMMIT_FILE).is_file():
        load_file(str(output / "model.safetensors"))
        json.loads((output / REPORT_NAME).read_text())
        for name in ADAPTER_FILES:
            load_file(str(output / name))


def _weights(output: pathlib.Path) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(str(output / name)) for name in ("model.safetensors", *ADAPTER_FILES)}


def test_killed_runs_resume_to_bit_identical_weights(data, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _run(_command(data, full), tmp_path / "full.log") == 0
    command = _command(data, killed)

    # 1. Killed with checkpoint-2 complete in its temporary folder: only checkpoint-1 is trusted.
    assert _run(command, tmp_path / "kill1.log", "checkpoint-staged:2") == -signal.SIGKILL
    assert [p.name for p in checkpoint_dirs(killed)] == ["checkpoint-1"]
    assert [p.name for p in leftovers_in(killed)][0].startswith(".checkpoint-2.tmp-")
    assert not (killed / COMMIT_FILE).exists()
    _assert_consistent(killed)

    # 2. Restarted: resumes from checkpoint-1, names the leftover; killed while rotating out checkpoint-2.
    assert _run(command, tmp_path / "kill2.log", "checkpoint-rotating:2") == -signal.SIGKILL
    log = (tmp_path / "kill2.log").read_text()
    assert "resuming from" in log and "checkpoint-1" in log and "ignoring 1 incomplete save(s)" in log, log[-3000:]
    assert [p.name for p in checkpoint_dirs(killed)] == ["checkpoint-3", "checkpoint-4"]
    assert any(p.name.startswith(".checkpoint-2.old-") for p in leftovers_in(killed))
    _assert_consistent(killed)

    # 3. Restarted and killed from outside at a random moment (logged for a rerun).
    seed = random.randrange(1 << 30)
    returncode = _run_killed_from_outside(command, killed, tmp_path / "kill3.log", random.Random(seed))
    assert returncode in (0, -signal.SIGKILL), (seed, (tmp_path / "kill3.log").read_text()[-3000:])
    _assert_consistent(killed)

    # 4. Restarted and killed half-way through committing the final output: no final model.
    assert _run(command, tmp_path / "kill4.log", "final-committing") == -signal.SIGKILL, seed
    assert not (killed / COMMIT_FILE).exists() and (killed / f"checkpoint-{STEPS}").is_dir()
    _assert_consistent(killed)

    # 5. Restarted to the end.
    assert _run(command, tmp_path / "final.log") == 0, (tmp_path / "final.log").read_text()[-3000:]
    _assert_consistent(killed)
    report = json.loads((killed / REPORT_NAME).read_text())
    assert report["resumed_from"].endswith(f"checkpoint-{STEPS}")
    expected, found = _weights(full), _weights(killed)
    for file_name, tensors in expected.items():
        assert sorted(found[file_name]) == sorted(tensors), file_name
        different = [key for key in tensors if not torch.equal(tensors[key], found[file_name][key])]
        assert not different, (seed, file_name, different[:5])
    # The uninterrupted run trained: the comparison is not between two untouched models.
    initial = load_file(str(full / "initial_checkpoint" / "model.safetensors"))
    assert any(not torch.equal(initial[k], expected["model.safetensors"][k]) for k in initial)
