"""Stage recipes and their DeepSpeed configs: validated without a GPU, official values pinned."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest

from tg_llava_eval.cli.train import STAGES
from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.training.recipe import FINETUNE, PRETRAIN, RECIPES, get_recipe
from tg_llava_eval.training.trainer import StageRun, build_training_arguments

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[3] / "training" / "deepspeed_configs"


def test_every_shipped_recipe_and_deepspeed_config_validates():
    assert set(RECIPES) == set(STAGES) == {"pretrain", "finetune"}
    for recipe in RECIPES.values():
        recipe.validate()
    shipped = sorted(p.name for p in CONFIG_DIR.glob("*.json"))
    assert shipped == ["zero2.json", "zero3.json"]
    for path in CONFIG_DIR.glob("*.json"):
        config = json.loads(path.read_text())
        # "auto" values are filled by the HF integration from TrainingArguments: keep them.
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            assert config[key] == "auto", (path.name, key)
        assert config["bf16"]["enabled"] == "auto"
    zero3 = json.loads((CONFIG_DIR / "zero3.json").read_text())["zero_optimization"]
    assert zero3["stage"] == 3 and zero3["stage3_gather_16bit_weights_on_model_save"] is True


def test_official_hyperparameters():
    assert PRETRAIN.trainable_groups == ("projector", "text_guided_mask", "detail_perceiver")
    assert FINETUNE.trainable_groups == ("projector", "text_guided_mask", "detail_perceiver", "llm")
    assert (PRETRAIN.learning_rate, FINETUNE.learning_rate) == (1e-3, 2e-5)
    for recipe in (PRETRAIN, FINETUNE):
        assert recipe.lr_scheduler_type == "cosine" and recipe.warmup_ratio == 0.03
        assert recipe.weight_decay == 0.0 and recipe.num_train_epochs == 1 and recipe.model_max_length == 2048
        assert recipe.bf16 and recipe.gradient_checkpointing
    assert (PRETRAIN.zero_stage, FINETUNE.zero_stage) == (2, 3)
    # README vs script global batch (reference §4.1): pretrain 256 vs 16 x 2 x 4 = 128.
    assert (PRETRAIN.paper_global_batch, PRETRAIN.script_global_batch) == (256, 128)
    assert (FINETUNE.paper_global_batch, FINETUNE.script_global_batch) == (128, 128)
    assert not PRETRAIN.group_by_modality_length and FINETUNE.group_by_modality_length
    assert (PRETRAIN.template_attribute, FINETUNE.template_attribute) == ("pretrain_template", "template")
    assert not PRETRAIN.loads_stage1 and FINETUNE.loads_stage1


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(trainable_groups=("projector", "vision_tower")), r"\['vision_tower'\] unknown"),
        (dict(trainable_groups=()), "trainable_groups is empty"),
        (dict(learning_rate=0.0), "learning_rate=0.0 must be > 0"),
        (dict(warmup_ratio=1.5), "warmup_ratio=1.5"),
        (dict(zero_stage=3), "zero2.json declares ZeRO stage 2, zero_stage=3"),
        (dict(deepspeed_config="zero9.json"), "'zero9.json' is not in"),
    ],
)
def test_validation_names_the_field(change, message):
    with pytest.raises(TGLlavaConfigError, match=message):
        dataclasses.replace(PRETRAIN, **change).validate()


def test_unknown_stage_is_named():
    with pytest.raises(TGLlavaConfigError, match="unknown training stage 'align'"):
        get_recipe("align")


def _run(tmp_path, *flags, deepspeed=False):
    return StageRun(stage="pretrain", variant="tiny", data_path=tmp_path / "d.json", image_dir=tmp_path,
                    output_dir=tmp_path / "out", use_deepspeed=deepspeed, training_flags=tuple(flags))


def test_recipe_becomes_training_arguments_and_flags_override(tmp_path):
    defaults = PRETRAIN.training_argument_defaults()
    assert defaults["deepspeed"].endswith("deepspeed_configs/zero2.json")
    assert pathlib.Path(defaults["deepspeed"]).is_file()
    args = build_training_arguments(PRETRAIN, _run(tmp_path, "--learning_rate", "5e-4", "--max_steps", "7"))
    assert args.learning_rate == 5e-4 and args.max_steps == 7
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 0.03 and args.weight_decay == 0.0
    assert args.per_device_train_batch_size == 16 and args.gradient_accumulation_steps == 2
    assert args.use_cpu and args.remove_unused_columns is False and args.deepspeed is None


def test_bad_training_flags_are_named(tmp_path):
    with pytest.raises(TGLlavaConfigError, match="--no_such_flag"):
        build_training_arguments(PRETRAIN, _run(tmp_path, "--no_such_flag", "1"))
    with pytest.raises(TGLlavaConfigError, match="remove_unused_columns must stay False"):
        build_training_arguments(PRETRAIN, _run(tmp_path, "--remove_unused_columns", "True"))
    with pytest.raises(TGLlavaConfigError, match="conflicts with --output"):
        build_training_arguments(PRETRAIN, _run(tmp_path, "--output_dir", str(tmp_path / "elsewhere")))


def test_old_checkpointing_flag_still_overrides_the_recipe(tmp_path):
    assert build_training_arguments(PRETRAIN, _run(tmp_path)).activation_checkpointing is True
    for flags in (("--gradient_checkpointing", "False"), ("--gradient_checkpointing=False",)):
        assert build_training_arguments(PRETRAIN, _run(tmp_path, *flags)).activation_checkpointing is False


def test_cli_options_before_or_after_the_stage_and_launcher_local_rank(tmp_path):
    import argparse

    from tg_llava_eval.cli.train import _merge_options, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    # The deepspeed launcher puts --local_rank=N before the user's arguments.
    args = parser.parse_args(["--local_rank=1", "--variant", "tiny", "finetune", "--data", "d.json",
                              "--images", "img", "--learning_rate", "1e-4", "--output", "out", "--from", "s1",
                              "--strict-data", "--max_steps", "3"])
    options, hf_flags = _merge_options(args)
    assert args.stage == "finetune" and options["variant"] == "tiny" and options["strict_data"] is True
    assert str(options["data"]) == "d.json" and str(options["stage1_dir"]) == "s1" and str(options["output"]) == "out"
    assert hf_flags == ["--local_rank", "1", "--learning_rate", "1e-4", "--max_steps", "3"]
    from tg_llava_eval.errors import TGLlavaUsageError

    with pytest.raises(TGLlavaUsageError, match="missing required option.*--images"):
        _merge_options(parser.parse_args(["pretrain", "--variant", "tiny", "--data", "d", "--output", "o"]))
