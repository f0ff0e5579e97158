"""The two training stages of TG-LLaVA as typed, validated recipes (paper §4 / official scripts).

=======================  ==============================  ==============================
field                    ``pretrain`` (feature align.)   ``finetune`` (instruction)
=======================  ==============================  ==============================
trainable groups         projector, text_guided_mask,    the same + ``llm``
                         detail_perceiver
frozen                   llm, vision_tower, guide_tower  vision_tower, guide_tower
DeepSpeed                ZeRO-2 (``zero2.json``)         ZeRO-3 (``zero3.json``)
learning rate            1e-3                            2e-5
schedule                 cosine, warmup ratio 0.03       cosine, warmup ratio 0.03
epochs / WD / max len    1 / 0 / 2048                    1 / 0 / 2048
precision                bf16 (+ tf32 on CUDA)           bf16 (+ tf32 on CUDA)
per device × grad acc.   16 × 2 on 4 GPUs (= 128)        8 × 2 on 8 GPUs (= 128)
paper global batch       256 (README; script 128)        128 (README and script)
length grouping          no                              by modality (image / text-only)
template                 the variant's stage-1 template  the variant's template
loads stage 1            no                              yes, all TG groups, strictly
=======================  ==============================  ==============================

Values are the official ``scripts/train/*.sh`` ones (reference ``tg_llava_architecture.md`` §4.1);
anything else uses the Hugging Face ``TrainingArguments`` defaults, as the official scripts do
(AdamW, no gradient clipping under DeepSpeed since its JSON sets none). A recipe is plain data: it
is validated (:meth:`StageRecipe.validate`) and turned into ``TrainingArguments`` defaults without
touching a GPU, and every command-line flag of ``TrainingArguments`` still overrides it.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.modeling.modeling_tg_llava import FROZEN_GROUPS, TRAINABLE_GROUPS

#: Package folder holding the DeepSpeed JSON files (package data of ``tg_llava_eval.training``).
DEEPSPEED_CONFIG_PACKAGE = "tg_llava_eval.training"
DEEPSPEED_CONFIG_FOLDER = "deepspeed_configs"


@dataclasses.dataclass(frozen=True)
class StageRecipe:
    """One training stage.

    Attributes:
        name: ``"pretrain"`` or ``"finetune"``.
        trainable_groups: module groups trained (names of ``model.trainable_groups()``).
        deepspeed_config: file name in ``deepspeed_configs/``.
        zero_stage: the ZeRO stage that file must declare.
        learning_rate, lr_scheduler_type, warmup_ratio, weight_decay, num_train_epochs: optimiser
            and schedule (``warmup_ratio`` becomes ``TrainingArguments.warmup_steps`` < 1, the
            transformers-5 spelling of a ratio).
        model_max_length: longest token sequence after image-token expansion (official 2048).
        bf16: train in bfloat16 (the official runs; tf32 is added on CUDA only).
        per_device_train_batch_size, gradient_accumulation_steps, script_num_gpus: the official
            script's launch; their product is the script's global batch.
        paper_global_batch: the README's global batch (may differ from the script's).
        group_by_modality_length: use :class:`~tg_llava_eval.training.data.ModalityLengthGroupedSampler`.
        gradient_checkpointing: official ``True``.
        save_steps, save_total_limit: checkpointing (``save_steps`` < 1 is a ratio of all steps).
        loads_stage1: the stage starts from stage-1 adapters, loaded strictly.
        template_attribute: the :class:`~tg_llava_eval.variants.Variant` attribute naming the
            conversation template of this stage (``pretrain_template`` or ``template``).
    """

    name: str
    trainable_groups: tuple[str, ...]
    deepspeed_config: str
    zero_stage: int
    learning_rate: float
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    script_num_gpus: int
    paper_global_batch: int
    group_by_modality_length: bool
    loads_stage1: bool
    template_attribute: str
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    num_train_epochs: float = 1.0
    model_max_length: int = 2048
    bf16: bool = True
    gradient_checkpointing: bool = True
    save_steps: float = 0.5
    save_total_limit: int = 2

    @property
    def script_global_batch(self) -> int:
        """Per-device batch × gradient accumulation × the script's GPU count."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.script_num_gpus

    def deepspeed_config_text(self) -> str:
        """The shipped DeepSpeed JSON of this stage, as text.

        Raises:
            TGLlavaConfigError: the file is not in the package.
        """
        folder = resources.files(DEEPSPEED_CONFIG_PACKAGE).joinpath(DEEPSPEED_CONFIG_FOLDER)
        path = folder.joinpath(self.deepspeed_config)
        if not path.is_file():
            raise TGLlavaConfigError(f"recipe {self.name!r}: deepspeed_config {self.deepspeed_config!r} is not in {folder}")
        return path.read_text(encoding="utf-8")

    def deepspeed_config_path(self) -> str:
        """Filesystem path of the shipped DeepSpeed JSON (what ``--deepspeed`` receives)."""
        folder = resources.files(DEEPSPEED_CONFIG_PACKAGE).joinpath(DEEPSPEED_CONFIG_FOLDER)
        return str(folder.joinpath(self.deepspeed_config))

    def validate(self) -> None:
        """Check the recipe without building anything.

        Raises:
            TGLlavaConfigError: naming the field: unknown/frozen group, non-positive sizes, a
                warmup ratio outside [0, 1), a DeepSpeed file that is missing, not JSON, or declares
                another ZeRO stage.
        """
        unknown = [g for g in self.trainable_groups if g not in TRAINABLE_GROUPS]
        if unknown:
            raise TGLlavaConfigError(
                f"recipe {self.name!r}: trainable_groups {unknown} unknown; known {list(TRAINABLE_GROUPS)} "
                f"(always frozen: {list(FROZEN_GROUPS)})"
            )
        if not self.trainable_groups:
            raise TGLlavaConfigError(f"recipe {self.name!r}: trainable_groups is empty")
        for field in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                      "script_num_gpus", "paper_global_batch", "num_train_epochs", "model_max_length",
                      "save_total_limit"):
            if getattr(self, field) <= 0:
                raise TGLlavaConfigError(f"recipe {self.name!r}: {field}={getattr(self, field)} must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TGLlavaConfigError(f"recipe {self.name!r}: warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.weight_decay < 0:
            raise TGLlavaConfigError(f"recipe {self.name!r}: weight_decay={self.weight_decay} must be >= 0")
        if self.template_attribute not in ("pretrain_template", "template"):
            raise TGLlavaConfigError(f"recipe {self.name!r}: template_attribute={self.template_attribute!r}")
        try:
            config = json.loads(self.deepspeed_config_text())
        except json.JSONDecodeError as error:
            raise TGLlavaConfigError(f"recipe {self.name!r}: {self.deepspeed_config} is not JSON: {error}") from error
        declared = config.get("zero_optimization", {}).get("stage")
        if declared != self.zero_stage:
            raise TGLlavaConfigError(
                f"recipe {self.name!r}: {self.deepspeed_config} declares ZeRO stage {declared}, "
                f"zero_stage={self.zero_stage}"
            )

    def training_argument_defaults(self) -> dict[str, Any]:
        """The ``TrainingArguments`` values this recipe sets (everything else: HF defaults).

        Returns:
            Field name -> value; the caller adds device-dependent ones (``use_cpu``, ``tf32``).
        """
        return {
            "learning_rate": self.learning_rate,
            "lr_scheduler_type": self.lr_scheduler_type,
            "warmup_steps": self.warmup_ratio,
            "weight_decay": self.weight_decay,
            "num_train_epochs": self.num_train_epochs,
            "bf16": self.bf16,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            # transformers 5 name of the official `gradient_checkpointing True` (the old name still
            # works on the command line).
            "activation_checkpointing": self.gradient_checkpointing,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "deepspeed": self.deepspeed_config_path(),
            "logging_steps": 1,
            "report_to": "none",
        }


#: Stage 1: feature alignment on image-caption pairs (LLaVA's 558K).
PRETRAIN = StageRecipe(
    name="pretrain",
    trainable_groups=("projector", "text_guided_mask", "detail_perceiver"),
    deepspeed_config="zero2.json",
    zero_stage=2,
    learning_rate=1e-3,
    per_device_train_batch_size=16,
    gradient_accumulation_steps=2,
    script_num_gpus=4,
    paper_global_batch=256,
    group_by_modality_length=False,
    loads_stage1=False,
    template_attribute="pretrain_template",
)

#: Stage 2: visual instruction tuning (LLaVA's 665K mix), LLM trained too.
FINETUNE = StageRecipe(
    name="finetune",
    trainable_groups=("projector", "text_guided_mask", "detail_perceiver", "llm"),
    deepspeed_config="zero3.json",
    zero_stage=3,
    learning_rate=2e-5,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=2,
    script_num_gpus=8,
    paper_global_batch=128,
    group_by_modality_length=True,
    loads_stage1=True,
    template_attribute="template",
)

#: Recipes by stage name (the ``tg-llava-eval train`` sub-commands).
RECIPES: dict[str, StageRecipe] = {recipe.name: recipe for recipe in (PRETRAIN, FINETUNE)}

#: Groups exported after stage 1 and required by stage 2 (those the model has).
STAGE1_ADAPTER_GROUPS: tuple[str, ...] = PRETRAIN.trainable_groups


def get_recipe(name: str) -> StageRecipe:
    """The recipe of a stage.

    Raises:
        TGLlavaConfigError: unknown stage (lists the known ones).
    """
    if name not in RECIPES:
        raise TGLlavaConfigError(f"unknown training stage {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]
