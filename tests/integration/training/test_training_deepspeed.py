"""DeepSpeed training on CPU, through the real launchers, in fresh processes.

* ``test_e2e_two_stage_torchrun_zero2_then_zero3`` (the slowest test of the training suite, ~1-2
  min idle): ``torchrun --nproc_per_node 2`` runs stage 1 with ZeRO-2, then stage 2 with ZeRO-3
  from it; a fresh process reloads the stage-2 output with ``from_pretrained`` and generates.
  Checked on the outputs: frozen groups bit-identical, every trainable group changed, stage-1
  adapters + manifest, bad rows skipped and counted over both ranks.
* ``test_resume_matches_the_uninterrupted_run``: single-rank DeepSpeed ZeRO-2 (``--with-deepspeed``:
  a single CPU process would otherwise train without DeepSpeed); an uninterrupted
  6-step run vs a run resumed from its ``checkpoint-3``: the losses of steps 4-6 must agree to
  :data:`RESUME_TOLERANCE` (measured: identical to the last bit on CPU, fp32).

Stage-2 data mixes image and text-only rows so that, at some step, one rank trains on a micro-batch
without any image while the other has images (checked from the sampler's order): before the model
kept its visual branch in the graph for image-free batches, this aborted DeepSpeed with a gloo
collective mismatch (``tests/unit/training/test_text_only_batches.py``).
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
import torch

from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.training.checkpoints import MANIFEST_NAME
from tg_llava_eval.training.data import Entry, check_row, modality_length_grouped_indices
from tg_llava_eval.training.trainer import INITIAL_CHECKPOINT_DIR, REPORT_NAME

#: Largest allowed |loss(resumed) - loss(uninterrupted)| at the steps after the resume point.
RESUME_TOLERANCE = 1e-6
#: Per-subprocess time limit (seconds): generous for a loaded 2-core machine.
TIMEOUT = 900

#: Launched processes must use one thread each (two ranks share two cores) and the project's
#: persistent DeepSpeed op cache (environment.md §3).
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TORCH_EXTENSIONS_DIR": os.environ.get(
        "TORCH_EXTENSIONS_DIR", str(pathlib.Path.home() / ".cache" / "tg_llava_eval" / "torch_extensions")
    ),
}
#: Small, fast runs: tiny batches, no gradient checkpointing, fp32 (bit-exact comparisons).
FAST = ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--bf16", "False",
        "--gradient_checkpointing", "False", "--disable_tqdm", "True", "--dataloader_num_workers", "0"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], log: pathlib.Path) -> None:
    """Run a command, keep its output in ``log``, fail with its tail."""
    result = subprocess.run(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    log.write_text(result.stdout)
    assert result.returncode == 0, f"{command[:6]}... exited {result.returncode}:\n{result.stdout[-4000:]}"


def _torchrun(args: list[str], log: pathlib.Path) -> None:
    torchrun = pathlib.Path(sys.executable).with_name("torchrun")
    _run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()),
          "-m", "tg_llava_eval.cli.train", *args], log)


def _groups(path: pathlib.Path) -> dict[str, dict[str, torch.Tensor]]:
    """State dicts of every named module group of a saved model."""
    model = TGLlavaForConditionalGeneration.from_pretrained(path)
    groups = {**model.trainable_groups(), **model.frozen_groups()}
    return {name: {k: v.clone() for k, v in module.state_dict().items()} for name, module in groups.items()}


def _changed(before: dict, after: dict, group: str) -> bool:
    return any(not torch.equal(before[group][k], after[group][k]) for k in before[group])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dataset = generate_synthetic_dataset(tmp_path_factory.mktemp("ds") / "data", seed=2, n_train_stage1=16,
                                         n_train_stage2=16, n_test=2, image_size=56, text_only_fraction=0.3)
    rows = json.loads(dataset.stage2_json.read_text())
    (dataset.image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    first = next(row for row in rows if "image" in row)
    turns = first["conversations"]
    rows[3:3] = [
        {"id": "no-file", "image": "stage2/missing.png", "conversations": turns},
        {"id": "broken", "image": "broken.png", "conversations": turns},
        {"id": "robot", "image": first["image"], "conversations": [turns[0], {"from": "robot", "value": "x"}]},
    ]
    bad = dataset.root / "stage2_with_bad_rows.json"
    bad.write_text(json.dumps(rows))
    return dataset, bad


def _has_an_image_free_rank_step(stage2_data: pathlib.Path, image_dir: pathlib.Path, seed: int = 42) -> bool:
    """Whether the finetune order (2 ranks x 2 per device, the run's seed) puts an image-free
    micro-batch on one rank while the other rank has images. Micro-batch ``k`` of the sampler's
    order goes to rank ``k % 2`` (accelerate's batch-sampler sharding)."""
    rows = json.loads(stage2_data.read_text())
    entries = [e for e in (check_row(r, i, image_dir) for i, r in enumerate(rows)) if isinstance(e, Entry)]
    order = modality_length_grouped_indices([e.modality_length for e in entries], 2, 2, torch.Generator().manual_seed(seed))
    has_image = [any(entries[i].image_path for i in order[k:k + 2]) for k in range(0, len(order), 2)]
    return any(has_image[k] != has_image[k + 1] for k in range(0, len(has_image) - 1, 2))


def test_e2e_two_stage_torchrun_zero2_then_zero3(data, tmp_path):
    dataset, stage2_data = data
    assert _has_an_image_free_rank_step(stage2_data, dataset.image_dir)
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    _torchrun(["pretrain", "--variant", "tiny", "--data", str(dataset.stage1_json), "--images", str(dataset.image_dir),
               "--output", str(stage1), "--max_steps", "3", "--save_steps", "2", *FAST], tmp_path / "stage1.log")
    _torchrun(["finetune", "--variant", "tiny", "--data", str(stage2_data), "--images", str(dataset.image_dir),
               "--output", str(stage2), "--from", str(stage1), "--num_train_epochs", "1", "--save_steps", "100", *FAST],
              tmp_path / "stage2.log")

    report1 = json.loads((stage1 / REPORT_NAME).read_text())
    report2 = json.loads((stage2 / REPORT_NAME).read_text())
    assert report1["deepspeed"].endswith("zero2.json") and report2["deepspeed"].endswith("zero3.json")
    assert report1["world_size"] == report2["world_size"] == 2
    assert report1["effective_global_batch"] == 4 and report1["paper_global_batch"] == 256
    # One epoch of stage 2 draws every row, so the lazily found corrupt image is met on some
    # rank; the report merges both ranks' findings.
    assert report2["data"]["skipped_by_reason"] == {"unknown_role": 1, "missing_image": 1, "corrupt_image": 1}
    assert "row 4 (id 'broken')" in report2["data"]["examples"]["corrupt_image"][0]
    # Stage-1 exports: the three adapter groups with their manifest, also in checkpoint-2.
    for folder in (stage1, stage1 / "checkpoint-2"):
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        assert sorted(manifest["groups"]) == ["detail_perceiver", "projector", "text_guided_mask"]

    initial, after1, after2 = _groups(stage1 / INITIAL_CHECKPOINT_DIR), _groups(stage1), _groups(stage2)
    for group in ("llm", "vision_tower", "guide_tower"):  # frozen in stage 1: bit-identical
        assert all(torch.equal(initial[group][k], after1[group][k]) for k in initial[group]), group
    for group in ("projector", "text_guided_mask", "detail_perceiver"):
        assert _changed(initial, after1, group), group
    for group in ("vision_tower", "guide_tower"):  # frozen in stage 2 (ZeRO-3 gathered on save)
        assert all(torch.equal(after1[group][k], after2[group][k]) for k in after1[group]), group
    for group in ("projector", "text_guided_mask", "detail_perceiver", "llm"):
        assert _changed(after1, after2, group), group

    # A fresh process reloads the stage-2 output and generates from a test image.
    image = dataset.lmms_include_path / dataset.lmms_tasks["vqa"] / "data" / "images" / "00000.png"
    script = (
        "import sys, torch\n"
        "from tg_llava_eval.modeling import TGLlavaForConditionalGeneration\n"
        "from tg_llava_eval.processing import TGLlavaProcessor\n"
        "path, image = sys.argv[1], sys.argv[2]\n"
        "model = TGLlavaForConditionalGeneration.from_pretrained(path).eval()\n"
        "processor = TGLlavaProcessor.from_pretrained(path)\n"
        "assert all(p.numel() > 0 for p in model.parameters())\n"
        "inputs = processor.build_inputs('What colour is the shape in the top-left?', image)\n"
        "out = model.generate(**inputs, max_new_tokens=5, do_sample=False)\n"
        "new = out[0, inputs['input_ids'].shape[1]:]\n"
        "print('GENERATED', len(new), repr(processor.decode(new)))\n"
    )
    log = tmp_path / "generate.log"
    _run([sys.executable, "-c", script, str(stage2), str(image)], log)
    generated = [line for line in log.read_text().splitlines() if line.startswith("GENERATED")]
    assert generated and int(generated[0].split()[1]) >= 1


def test_resume_matches_the_uninterrupted_run(data, tmp_path):
    dataset, _ = data
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    common = ["pretrain", "--variant", "tiny", "--data", str(dataset.stage1_json), "--images", str(dataset.image_dir),
              "--max_steps", "6", "--save_steps", "3", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
              "--with-deepspeed", *FAST]
    # Both runs in one process (one import), via the CLI entry point; DeepSpeed single rank. The
    # resumed run starts from a model of ANOTHER seed: only a real resume (weights, optimizer,
    # schedule and data position from checkpoint-3) can reproduce steps 4-6.
    script = (
        "import json, shutil, sys\n"
        "from tg_llava_eval.cli.train import main\n"
        "from tg_llava_eval.checkpoints.creating import create_checkpoint\n"
        "common, full, resumed = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "assert main(common + ['--output', full]) == 0\n"
        "shutil.copytree(full + '/checkpoint-3', resumed + '/checkpoint-3')\n"
        "create_checkpoint('tiny', resumed + '/initial_checkpoint', seed=7)\n"
        "assert main(common + ['--output', resumed, '--resume_from_checkpoint', 'last']) == 0\n"
    )
    _run([sys.executable, "-c", script, json.dumps(common), str(full), str(resumed)], tmp_path / "resume.log")

    def losses(folder):
        history = json.loads((folder / REPORT_NAME).read_text())["log_history"]
        return {e["step"]: e["loss"] for e in history if "loss" in e}

    assert json.loads((full / REPORT_NAME).read_text())["deepspeed"].endswith("zero2.json")
    uninterrupted, after_resume = losses(full), losses(resumed)
    assert sorted(uninterrupted) == list(range(1, 7)) and {4, 5, 6} <= set(after_resume)
    for step in (4, 5, 6):
        assert abs(after_resume[step] - uninterrupted[step]) <= RESUME_TOLERANCE, (step, after_resume, uninterrupted)
