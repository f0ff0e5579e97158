"""Training runs inside the test process (plain Trainer, no DeepSpeed): learning and CLI errors.

Threads: on a shared 2-core machine PyTorch's intra-op threads spin against each other and a tiny
step takes seconds instead of ~0.15 s, so these tests run with one thread (restored afterwards).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil

import pytest
import torch

from tg_llava_eval.cli.train import main as train_main
from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.training.checkpoints import save_stage1_adapters
from tg_llava_eval.training.trainer import REPORT_NAME, StageRun, run_stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Steps on the fixed batch, and the loss ratio (mean of the last 3 / first) they must reach.
STEPS = 30
MAX_LOSS_RATIO = 0.7


@pytest.fixture(scope="module")
def fixed_batch_data(tmp_path_factory):
    """Four image rows: with a batch of 4 every step sees the same batch."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("fixed") / "data", seed=1, n_train_stage1=4,
                                      n_train_stage2=4, n_test=1, image_size=56, text_only_fraction=0.0)


def _stage1_folder(checkpoint, tmp_path):
    """A stage-1 folder = the checkpoint + its (untrained) adapter groups and manifest."""
    folder = tmp_path / "stage1"
    shutil.copytree(checkpoint, folder)
    save_stage1_adapters(TGLlavaForConditionalGeneration.from_pretrained(folder), folder)
    return folder


@pytest.mark.parametrize("variant", ["tiny", "tiny-baseline"])
def test_loss_falls_on_a_fixed_batch(variant, fixed_batch_data, tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint if variant == "tiny" else tiny_baseline_checkpoint
    stage1 = _stage1_folder(checkpoint, tmp_path)
    # The baseline run also checks that the caller's grad mode does not matter (importing
    # VLMEvalKit switches it off process-wide).
    grad_mode = torch.no_grad() if variant == "tiny-baseline" else contextlib.nullcontext()
    with grad_mode:
        report = run_stage(StageRun(
            stage="finetune", variant=variant, data_path=fixed_batch_data.stage2_json,
            image_dir=fixed_batch_data.image_dir, output_dir=tmp_path / "out", stage1_dir=stage1, use_deepspeed=False,
            # A higher constant LR than the recipe's 2e-5 so that a few dozen steps show learning.
            training_flags=("--max_steps", str(STEPS), "--per_device_train_batch_size", "4",
                            "--gradient_accumulation_steps", "1", "--learning_rate", "1e-3",
                            "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--bf16", "False",
                            "--gradient_checkpointing", "False", "--save_strategy", "no", "--disable_tqdm", "True"),
        ))
    losses = [entry["loss"] for entry in report["log_history"] if "loss" in entry]
    assert len(losses) == STEPS
    # Measured (tiny, seed 0): 6.69 -> ~3.4 for both TG and baseline after 30 steps.
    assert sum(losses[-3:]) / 3 < MAX_LOSS_RATIO * losses[0], losses
    assert report["data"]["skipped_total"] == 0
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["effective_global_batch"] == 4 and saved["paper_global_batch"] == 128


def test_cli_strict_data_names_the_bad_row(fixed_batch_data, tiny_checkpoint, tmp_path, caplog):
    rows = json.loads(fixed_batch_data.stage1_json.read_text())
    rows.insert(2, {"id": "ghost", "image": "stage1/does-not-exist.png", "conversations": rows[0]["conversations"]})
    data = tmp_path / "with_bad_row.json"
    data.write_text(json.dumps(rows))
    argv = ["pretrain", "--variant", "tiny", "--model", str(tiny_checkpoint), "--data", str(data),
            "--images", str(fixed_batch_data.image_dir), "--output", str(tmp_path / "out"), "--no-deepspeed",
            "--strict-data", "--max_steps", "1"]
    with caplog.at_level(logging.ERROR):
        assert train_main(argv) == 2
    assert "row 2 (id 'ghost')" in caplog.text and "missing_image" in caplog.text
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_cli_rejects_a_checkpoint_of_another_variant(fixed_batch_data, tiny_baseline_checkpoint, tmp_path, caplog):
    argv = ["pretrain", "--variant", "tiny", "--model", str(tiny_baseline_checkpoint),
            "--data", str(fixed_batch_data.stage1_json), "--images", str(fixed_batch_data.image_dir),
            "--output", str(tmp_path / "out"), "--no-deepspeed"]
    with caplog.at_level(logging.ERROR):
        assert train_main(argv) == 2
    assert "holds variant 'tiny-baseline' but --variant is 'tiny'" in caplog.text


def test_cli_rejects_a_checkpoint_whose_template_is_not_the_variants(fixed_batch_data, tiny_checkpoint, tmp_path,
                                                                      caplog):
    # A tiny checkpoint made before the tiny presets switched to qwen_2_bare: training would render
    # prompts with one template and save a processor that renders them with another.
    old = tmp_path / "old_tiny"
    shutil.copytree(tiny_checkpoint, old)
    for name in ("config.json", "processor_config.json"):
        config = json.loads((old / name).read_text())
        config["template"] = "qwen_2"
        (old / name).write_text(json.dumps(config))
    argv = ["pretrain", "--variant", "tiny", "--model", str(old), "--data", str(fixed_batch_data.stage1_json),
            "--images", str(fixed_batch_data.image_dir), "--output", str(tmp_path / "out"), "--no-deepspeed"]
    with caplog.at_level(logging.ERROR):
        assert train_main(argv) == 2
    assert f"{old} renders prompts with the 'qwen_2' template but variant 'tiny' uses 'qwen_2_bare'" in caplog.text
    assert not (tmp_path / "out" / "model.safetensors").exists()
