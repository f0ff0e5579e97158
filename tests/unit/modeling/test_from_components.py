"""Assembling a stage-1 start from pretrained parts: ``from_components``, ``assemble_checkpoint``
and ``tg-llava-eval create --vision/--llm``.

The "pretrained" parts are a tiny random ``CLIPModel`` and a tiny ``Qwen2ForCausalLM`` at the sizes
of the ``tiny`` preset, saved with locally built tokenizers (the real CLIP BPE truncated as for the
tiny guide tower, and the tiny Qwen2-family tokenizer). The LLM's embedding has no ``<image>`` row,
so assembling must grow it, as with a real Vicuna or Llama-3.
"""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPVisionModel, Qwen2ForCausalLM

from tg_llava_eval.checkpoints.assembling import assemble_checkpoint
from tg_llava_eval.checkpoints.creating import VOCAB_PAD_MULTIPLE, build_tokenizers
from tg_llava_eval.cli import main as cli_main
from tg_llava_eval.errors import TGLlavaCheckpointError, TGLlavaConfigError
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor
from tg_llava_eval.variants import get_variant

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VARIANT = "tiny"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """``(clip_dir, llm_dir, clip, llm)``: tiny pretrained parts saved as HF checkpoints."""
    root = tmp_path_factory.mktemp("parts")
    preset = get_variant(VARIANT)
    reference = preset.config()
    tokenizer, guide_tokenizer = build_tokenizers(preset)
    torch.manual_seed(123)
    guide_config = reference.guide_config.to_dict()
    guide_config["vocab_size"] = len(guide_tokenizer)
    clip = CLIPModel(CLIPConfig(text_config=guide_config, vision_config=reference.vision_config.to_dict())).eval()
    clip_dir = root / "clip"
    clip.save_pretrained(clip_dir)
    guide_tokenizer.save_pretrained(clip_dir)
    # A pretrained LLM knows nothing of <image>: its vocabulary ends just before that id.
    text_config = reference.text_config.__class__(
        **{**reference.text_config.to_dict(), "vocab_size": tokenizer.convert_tokens_to_ids("<image>")}
    )
    llm = Qwen2ForCausalLM(text_config).eval()
    llm_dir = root / "llm"
    llm.save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)
    return clip_dir, llm_dir, clip, llm


@pytest.fixture(scope="module")
def assembled(parts):
    clip_dir, llm_dir, _, _ = parts
    return TGLlavaForConditionalGeneration.from_components(clip_dir, llm_dir, variant=VARIANT, seed=0)


@pytest.fixture(scope="module")
def assembled_dir(parts, tmp_path_factory):
    clip_dir, llm_dir, _, _ = parts
    return assemble_checkpoint(VARIANT, tmp_path_factory.mktemp("assembled") / "ckpt", vision=clip_dir, llm=llm_dir)


def _equal_state(module, expected: dict[str, torch.Tensor]) -> None:
    actual = module.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def test_towers_and_llm_hold_the_pretrained_weights(parts, assembled):
    _, _, clip, llm = parts
    _equal_state(assembled.vision_tower, clip.vision_model.state_dict())
    _equal_state(assembled.guide_tower, clip.text_model.state_dict())
    pretrained = llm.state_dict()
    rows = llm.config.vocab_size
    grown = {"model.embed_tokens.weight", "lm_head.weight"}
    for key, value in assembled.language_model.state_dict().items():
        if key in grown:
            # The pretrained rows are kept; <image> and the padding rows start at the mean row.
            assert torch.equal(value[:rows], pretrained[key])
            assert torch.allclose(value[rows:], pretrained[key].mean(dim=0).expand_as(value[rows:]))
        else:
            assert torch.equal(value, pretrained[key]), key
    config = assembled.config
    assert config.text_config.vocab_size % VOCAB_PAD_MULTIPLE == 0
    assert rows <= config.image_token_id < config.text_config.vocab_size
    assert assembled.get_input_embeddings().weight.shape[0] == config.text_config.vocab_size
    # The sub-configs are the parts' own.
    assert config.vision_config.hidden_size == clip.config.vision_config.hidden_size
    assert config.guide_config.vocab_size == clip.config.text_config.vocab_size
    assert config.guide_config.eos_token_id == config.guide_config.pad_token_id == clip.config.text_config.vocab_size - 1
    assert config.variant == VARIANT and config.use_text_guided_mask and config.use_detail_perceiver


def test_tg_modules_are_freshly_initialised_and_seeded(parts, assembled):
    mask = assembled.text_guided_mask
    # The official init: TG-FOM's output layer is zero, so the fresh model is LLaVA-1.5 + TG-DP.
    assert not mask.output_projection.weight.any() and not mask.output_projection.bias.any()
    std = assembled.config.initializer_range
    assert mask.query_tokens.std().item() == pytest.approx(std, rel=0.2)
    assert assembled.detail_perceiver.latents.std().item() == pytest.approx(std, rel=0.3)
    assert assembled.multi_modal_projector.linear_1.weight.any()
    clip_dir, llm_dir, _, _ = parts
    rng_before = torch.random.get_rng_state()
    again = TGLlavaForConditionalGeneration.from_components(clip_dir, llm_dir, variant=VARIANT, seed=0)
    other = TGLlavaForConditionalGeneration.from_components(clip_dir, llm_dir, variant=VARIANT, seed=1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG is left alone
    _equal_state(again, assembled.state_dict())
    assert not torch.equal(other.text_guided_mask.query_tokens, mask.query_tokens)
    _equal_state(other.vision_tower, assembled.vision_tower.state_dict())


def test_towers_are_frozen_and_the_rest_trainable(assembled):
    for name, group in assembled.frozen_groups().items():
        assert not any(p.requires_grad for p in group.parameters()), name
    for name, group in assembled.trainable_groups().items():
        assert all(p.requires_grad for p in group.parameters()), name


def test_forward_and_generate_through_the_processor(assembled_dir):
    model = TGLlavaForConditionalGeneration.from_pretrained(assembled_dir)
    processor = TGLlavaProcessor.from_pretrained(assembled_dir)
    question = "What colour is the circle?"
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    batch = processor(
        [processor.apply_template(question, has_image=True)], [image], [processor.inference_guide_text(question)],
        padding_side="left",
    )
    with torch.no_grad():
        logits = model(**batch).logits
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    assert out.shape[1] > batch["input_ids"].shape[1]


def test_save_and_from_pretrained_give_identical_logits(assembled, assembled_dir):
    reloaded = TGLlavaForConditionalGeneration.from_pretrained(assembled_dir)
    _equal_state(reloaded, assembled.state_dict())
    processor = TGLlavaProcessor.from_pretrained(assembled_dir)
    batch = processor(
        [processor.apply_template("Describe the image.", has_image=True)], [Image.new("RGB", (56, 56), (0, 90, 200))],
        [processor.inference_guide_text("Describe the image.")],
    )
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, assembled(**batch).logits)


def test_cli_assembles_from_parts(parts, tmp_path, capsys):
    clip_dir, llm_dir, clip, _ = parts
    out = tmp_path / "cli"
    assert cli_main(["create", "--variant", VARIANT, "-o", str(out), "--vision", str(clip_dir), "--llm", str(llm_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = TGLlavaForConditionalGeneration.from_pretrained(out)
    _equal_state(model.vision_tower, clip.vision_model.state_dict())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--vision", "{missing}", "--llm", "{llm}"], "--vision '{missing}': no such folder"),
        (["--vision", "{clip}", "--llm", "{missing}"], "--llm '{missing}': no such folder"),
        (["--vision", "{llm}", "--llm", "{llm}"], "expected a CLIP checkpoint"),
        (["--vision", "{clip}", "--llm", "{clip}"], "AutoModelForCausalLM cannot build"),
        (["--vision", "{clip}"], "needs both --vision and --llm"),
    ],
)
def test_cli_names_the_bad_argument(parts, tmp_path, capsys, flags, message):
    clip_dir, llm_dir, _, _ = parts
    paths = dict(clip=clip_dir, llm=llm_dir, missing=tmp_path / "nowhere")
    argv = ["create", "--variant", VARIANT, "-o", str(tmp_path / "out")] + [f.format(**paths) for f in flags]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    message = message.format(**paths)
    assert message in err and "Traceback" not in err
    if "expected" in message or "cannot build" in message:
        wrong = llm_dir if "CLIP" in message else clip_dir
        assert str(wrong) in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_part_of_other_sizes_than_the_variant_is_refused(parts, tmp_path):
    clip_dir, llm_dir, clip, _ = parts
    # A CLIP whose vision width is not the tiny preset's.
    vision = clip.config.vision_config.to_dict()
    vision["hidden_size"] *= 2
    wider = CLIPModel(CLIPConfig(text_config=clip.config.text_config.to_dict(), vision_config=vision))
    wider.save_pretrained(tmp_path / "wide")
    with pytest.raises(TGLlavaConfigError, match=r"vision_config\.hidden_size.*wide"):
        TGLlavaForConditionalGeneration.from_components(tmp_path / "wide", llm_dir, variant=VARIANT)
    # Parts that fit tiny do not fit a real-size preset.
    with pytest.raises(TGLlavaConfigError, match=r"variant 'tg-llava-qwen2-7b' declares vision_config"):
        TGLlavaForConditionalGeneration.from_components(clip_dir, llm_dir, variant="tg-llava-qwen2-7b")


def test_vision_only_clip_needs_a_guide_and_works_with_one(parts, tmp_path):
    clip_dir, llm_dir, clip, _ = parts
    vision_only = CLIPVisionModel(clip.config.vision_config)
    vision_only.load_state_dict(clip.vision_model.state_dict())
    vision_only.save_pretrained(tmp_path / "vision")
    with pytest.raises(TGLlavaCheckpointError, match="only a CLIP vision tower: pass guide="):
        TGLlavaForConditionalGeneration.from_components(tmp_path / "vision", llm_dir, variant=VARIANT)
    model = TGLlavaForConditionalGeneration.from_components(tmp_path / "vision", llm_dir, variant=VARIANT, guide=clip_dir)
    _equal_state(model.vision_tower, clip.vision_model.state_dict())
    _equal_state(model.guide_tower, clip.text_model.state_dict())


def test_legacy_single_tower_layout_loads(parts, tmp_path):
    """CLIPVisionModel files written before transformers v5 keep the ``vision_model.`` prefix."""
    from safetensors.torch import save_file

    clip_dir, llm_dir, clip, _ = parts
    legacy = tmp_path / "legacy_vision"
    CLIPVisionModel(clip.config.vision_config).save_pretrained(legacy)
    save_file({f"vision_model.{k}": v.contiguous() for k, v in clip.vision_model.state_dict().items()},
              str(legacy / "model.safetensors"))
    model = TGLlavaForConditionalGeneration.from_components(legacy, llm_dir, variant=VARIANT, guide=clip_dir)
    _equal_state(model.vision_tower, clip.vision_model.state_dict())


def test_dtype_is_one_for_the_whole_model(parts, tmp_path):
    clip_dir, llm_dir, _, llm = parts
    # A bf16 LLM checkpoint (its config.json records bfloat16) still gives an fp32 model by default.
    bf16_dir = tmp_path / "llm_bf16"
    copy.deepcopy(llm).to(torch.bfloat16).save_pretrained(bf16_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bf16_dir / name).write_bytes((llm_dir / name).read_bytes())
    model = TGLlavaForConditionalGeneration.from_components(clip_dir, bf16_dir, variant=VARIANT)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model = TGLlavaForConditionalGeneration.from_components(clip_dir, llm_dir, variant=VARIANT, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_missing_weights_are_reported_with_the_directory(parts, tmp_path):
    from safetensors.torch import load_file, save_file

    clip_dir, llm_dir, _, _ = parts
    broken = tmp_path / "broken_llm"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((llm_dir / name).read_bytes())
    state = load_file(str(llm_dir / "model.safetensors"))
    state.pop("model.norm.weight")
    state["model.extra.weight"] = torch.zeros(1)
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(TGLlavaCheckpointError, match=r"llm=.*broken_llm.*model\.norm\.weight.*model\.extra\.weight"):
        TGLlavaForConditionalGeneration.from_components(clip_dir, broken, variant=VARIANT)


def test_stage1_training_starts_from_the_assembled_checkpoint(assembled_dir, tmp_path):
    from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
    from tg_llava_eval.training.trainer import StageRun, run_stage

    data = generate_synthetic_dataset(tmp_path / "data", seed=1, n_train_stage1=2, n_train_stage2=1, n_test=1,
                                      image_size=56, text_only_fraction=0.0)
    report = run_stage(StageRun(
        stage="pretrain", variant=VARIANT, data_path=data.stage1_json, image_dir=data.image_dir,
        output_dir=tmp_path / "out", model_path=assembled_dir, use_deepspeed=False,
        training_flags=("--max_steps", "1", "--per_device_train_batch_size", "2", "--bf16", "False",
                        "--gradient_checkpointing", "False", "--save_strategy", "no", "--disable_tqdm", "True"),
    ))
    losses = [entry["loss"] for entry in report["log_history"] if "loss" in entry]
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0]))
