"""SigLIP towers end to end (issue #20): create -> chat -> stage 1 -> stage 2 -> VLMEvalKit and lmms-eval.

The "pretrained" SigLIP part is a tiny random transformers ``SiglipModel`` (both towers, the vision
attention-pooling head included, as google's checkpoints) at the ``tiny-siglip`` preset's sizes,
saved with a SentencePiece guide tokenizer trained here with the ``sentencepiece`` package; the LLM
is a tiny ``Qwen2ForCausalLM`` without an ``<image>`` row. ``tg-llava-eval create --vision --llm``
assembles them, ``chat`` answers, one stage-1 and one stage-2 step train on the synthetic data
(plain Trainer, CPU), and the real toolkits evaluate the stage-2 output exactly as the CLIP tests
drive them (``run.py`` for VLMEvalKit, the ``lmms-eval`` console script with the local tasks).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import Qwen2ForCausalLM, SiglipConfig, SiglipModel

from tg_llava_eval.cli import main as cli_main
from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor, build_llm_tokenizer, build_sentencepiece_guide_tokenizer
from tg_llava_eval.training.trainer import StageRun, run_stage
from tg_llava_eval.variants import TINY_SIGLIP_GUIDE_VOCAB, get_variant

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]

VARIANT = "tiny-siglip"
REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    """A helper module of the toolkit tests, by file (as the VLMEvalKit tests load tiny_datasets)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules[name]) if sys.modules[name] is module else None
    return sys.modules[name]


lmms = _load("tg_lmms_helpers", REPO / "tests" / "integration" / "lmms_eval" / "tg_lmms_helpers.py")
tiny = _load("tiny_datasets", REPO / "tests" / "data" / "vlmeval" / "tiny_datasets.py")
STEP_FLAGS = ("--max_steps", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
              "--bf16", "False", "--gradient_checkpointing", "False", "--save_strategy", "no", "--disable_tqdm", "True")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """``(siglip_dir, llm_dir, siglip)``: a tiny SigLIP dual-tower checkpoint and a tiny LLM."""
    root = tmp_path_factory.mktemp("siglip_parts")
    reference = get_variant(VARIANT).config()
    guide_tokenizer = build_sentencepiece_guide_tokenizer(TINY_SIGLIP_GUIDE_VOCAB, model_max_length=64)
    torch.manual_seed(7)
    text = dict(reference.guide_config.to_dict(), vocab_size=len(guide_tokenizer))
    vision = dict(reference.vision_config.to_dict(), vision_use_head=True)  # google's checkpoints have the head
    siglip = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
    siglip_dir = root / "siglip"
    siglip.save_pretrained(siglip_dir)
    guide_tokenizer.save_pretrained(siglip_dir)
    tokenizer = build_llm_tokenizer(reference.template)
    text_config = reference.text_config.__class__(
        **{**reference.text_config.to_dict(), "vocab_size": tokenizer.convert_tokens_to_ids("<image>")}
    )
    llm_dir = root / "llm"
    Qwen2ForCausalLM(text_config).save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)
    return siglip_dir, llm_dir, siglip


@pytest.fixture(scope="module")
def created(parts, tmp_path_factory) -> Path:
    siglip_dir, llm_dir, _ = parts
    out = tmp_path_factory.mktemp("siglip_ckpt") / "ckpt"
    assert cli_main(["create", "--variant", VARIANT, "--vision", str(siglip_dir), "--llm", str(llm_dir), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("siglip_data") / "data", seed=3, n_train_stage1=2,
                                      n_train_stage2=2, n_test=1, image_size=56, text_only_fraction=0.0)


@pytest.fixture(scope="module")
def trained(created, data, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("siglip_train")
    stage1 = run_stage(StageRun(stage="pretrain", variant=VARIANT, data_path=data.stage1_json, image_dir=data.image_dir,
                                output_dir=root / "stage1", model_path=created, use_deepspeed=False,
                                training_flags=STEP_FLAGS))
    stage2 = run_stage(StageRun(stage="finetune", variant=VARIANT, data_path=data.stage2_json, image_dir=data.image_dir,
                                output_dir=root / "stage2", stage1_dir=root / "stage1", use_deepspeed=False,
                                training_flags=STEP_FLAGS))
    for report in (stage1, stage2):
        assert [e["loss"] for e in report["log_history"] if "loss" in e], report["log_history"]
    return root / "stage1", root / "stage2"


def test_create_assembles_the_siglip_towers(parts, created):
    _, _, siglip = parts
    model = TGLlavaForConditionalGeneration.from_pretrained(created)
    assert (type(model.vision_tower).__name__, type(model.guide_tower).__name__) == ("SiglipVisionModel", "SiglipTextModel")
    vision = {k: v for k, v in siglip.vision_model.state_dict().items() if not k.startswith("head.")}
    assert model.vision_tower.state_dict().keys() == vision.keys()  # the unused pooling head is dropped
    for key, value in vision.items():
        assert torch.equal(model.vision_tower.state_dict()[key], value), key
    for key, value in siglip.text_model.state_dict().items():  # the text head makes pooler_output: kept
        assert torch.equal(model.guide_tower.state_dict()[key], value), key
    processor = TGLlavaProcessor.from_pretrained(created)
    assert type(processor.guide_tokenizer).__name__ == "SiglipTokenizer" and processor.guide_pad_to_max_length
    assert model.config.variant == VARIANT and model.config.num_patches == 16


def test_create_refuses_a_siglip_part_for_a_clip_preset(parts, tmp_path, capsys):
    siglip_dir, llm_dir, _ = parts
    assert cli_main(["create", "--variant", "tiny", "--vision", str(siglip_dir), "--llm", str(llm_dir),
                     "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "vision_config.model_type='clip_vision_model'" in err and "'siglip_vision_model'" in err


def test_chat_answers(created, data, capsys):
    image = next(Path(data.image_dir).rglob("*.png"))
    assert cli_main(["chat", "What colour is the shape?", "--model", str(created), "--image", str(image),
                     "--max-new-tokens", "3", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip()


def test_vlmevalkit_end_to_end(trained, tmp_path):
    lmu = tmp_path / "LMUData"
    lmu.mkdir()
    tiny.write_mcq(lmu)
    env = {k: v for k, v in os.environ.items() if k not in ("MMEVAL_ROOT", "OPENAI_API_KEY", "WORLD_SIZE", "RANK")}
    env.update(LMUData=str(lmu), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    work = tmp_path / "work"
    _, stage2 = trained
    result = subprocess.run([sys.executable, str(REPO / "run.py"), "--model", "tg_llava", "--model-path", str(stage2),
                             "--judge", "exact_matching", "--max-tokens", "4", "--data", tiny.MCQ_NAME, "--work-dir",
                             str(work)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    predictions = pd.read_excel(work / "tg_llava" / f"tg_llava_{tiny.MCQ_NAME}.xlsx")
    truth = pd.read_csv(lmu / f"{tiny.MCQ_NAME}.tsv", sep="\t")
    assert sorted(predictions["index"]) == sorted(truth["index"]), log[-3000:]
    manifest = json.loads((work / "tg_llava" / "tg_llava_run.json").read_text())
    assert manifest["variant"] == VARIANT, log[-3000:]
    assert f"tg_llava x {tiny.MCQ_NAME}: 0 of {len(truth)} rows failed" in log


def test_lmms_eval_end_to_end(trained, tmp_path):
    _, stage2 = trained
    out = tmp_path / "lmms" / "out"
    command = [str(lmms.VENV_BIN / "lmms-eval"), *lmms.lmms_args(stage2, out, model_args=f"variant={VARIANT}")]
    run = lmms.finish_lmms(lmms.start_lmms(command, out, tmp_path / "cache"))
    assert set(lmms.ALL_TASKS) <= set(run.results["results"])
    assert run.results["config"]["model"] == "tg_llava"
