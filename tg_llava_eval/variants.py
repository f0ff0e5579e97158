"""The variant catalogue: every named model preset, as plain data (no torch import).

This is the one home of the model sizes, the variant names and the names the toolkits know them
by. Everything else is derived from it: the VLMEvalKit presets (:attr:`Variant.vlmevalkit_name`),
the lmms-eval model ids (:attr:`Variant.lmms_eval_id`), the results' identity table
(method, LLM label, TG switches) and the check that a checkpoint is the variant it claims to be
(:func:`variant_mismatches`). The module imports no torch or transformers, so the results and
leaderboard side can read it; :meth:`Variant.config` builds the ``TGLlavaConfig`` lazily.
Rationale and layout: docs/architecture.md ("Variants").

Each :class:`Variant` is built once from a backbone table (:data:`LLM_BACKBONES`) and a switch set,
so the TG-LLaVA model, its LLaVA-1.5 baseline and the ablations of one LLM share every number:

==========================  ====================================================================
name                        what
==========================  ====================================================================
``tg-llava-<llm>``          TG-LLaVA (TG-FOM + TG-DP) on ``<llm>`` ∈ vicuna-13b, llama3-8b, qwen2-7b
``llava-1.5-<llm>``         the LLaVA-1.5 baseline of the same code (both switches off)
``tg-llava-<llm>-no-fom``   ablation: TG-DP only
``tg-llava-<llm>-no-dp``    ablation: TG-FOM only
``tiny``                    TG-LLaVA at toy sizes for tests and the demo (Qwen2-style LLM)
``tiny-baseline``           LLaVA-1.5 at the same toy sizes (also ``tiny-no-fom``, ``tiny-no-dp``)
``tg-llava-<llm>-siglip-guide``   TG-LLaVA with SigLIP so400m's text tower as the guide (CLIP-L vision)
``tg-llava-<llm>-siglip-vision``  TG-LLaVA with SigLIP so400m as the vision tower (CLIP-L text guide)
``tg-llava-<llm>-siglip``   TG-LLaVA with both towers SigLIP so400m (also ``tiny-siglip-guide``,
                            ``tiny-siglip-vision``, ``tiny-siglip`` at toy sizes)
==========================  ====================================================================

The tower sets (:data:`TOWER_SETS`, families in :data:`TOWER_FAMILIES`) are the official README's
"switch the text tower to ``google/siglip-so400m-patch14-384``" made real, and the same switch for
the vision tower; the official code cannot run them (CLIP tokenizer and sizes hard-coded), so they
have no parity reference (docs/architecture.md, "SigLIP towers").

Provenance of the real sizes: CLIP ViT-L/14-336 and its text tower
(``openai/clip-vit-large-patch14-336`` config.json); the LLMs' own config.json files
(``lmsys/vicuna-13b-v1.5``, ``meta-llama/Meta-Llama-3-8B-Instruct``, ``Qwen/Qwen2-7B-Instruct``);
the TG module sizes are the official defaults of ``TGLlavaConfig``
(``AIDC-AI/TG-LLaVA@0009eb8``; docs/architecture.md). The ``<image>`` token gets an
embedding row as llava-hf does: Vicuna 32000 (vocabulary padded to 32064), Llama-3 128256 (padded to
128320, as llava-hf's llama3-llava-next), Qwen2 151646 (Qwen2-7B's embedding already has 152064 rows).

SigLIP so400m sizes: ``google/siglip-so400m-patch14-384`` config.json (vision and text: width 1152,
MLP 4304, 27 layers, 16 heads; vision 384 px, patch 14; text: the ``SiglipTextConfig`` defaults the
file leaves unset, vocabulary 32000 and 64 positions). Real-size presets instantiate on the meta
device without any download (see ``tests/unit/test_variants.py``, which pins every part's parameter
count).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import TGLlavaConfigError

if TYPE_CHECKING:  # the config class imports transformers; built lazily in Variant.config
    from .modeling.configuration_tg_llava import TGLlavaConfig


@dataclass(frozen=True)
class LLMBackbone:
    """One LLM as the presets use it.

    Attributes:
        key: Short name used in variant names (``qwen2-7b``).
        display: The LLM's full name, as run manifests record it (``Qwen2-7B-Instruct``).
        label: The LLM's label in tables (``Qwen2-7B``); publications' other spellings are in
            ``aliases``.
        vlmevalkit_stem: How the LLM is written in VLMEvalKit preset names (``Qwen2-7B`` in
            ``TG-LLaVA-Qwen2-7B``); empty for a backbone without VLMEvalKit presets.
        text_config: ``AutoConfig``-style dict of the LLM (``model_type`` included).
        image_token_id: Embedding row of ``<image>``.
        template: Conversation template of visual instruction tuning and inference.
        pretrain_template: Template of stage 1 as the official scripts use it.
        source: Where the numbers come from.
        aliases: Other names publications use for this LLM (mapped to ``label`` in tables).
    """

    key: str
    display: str
    label: str
    vlmevalkit_stem: str
    text_config: dict[str, Any]
    image_token_id: int
    template: str
    pretrain_template: str
    source: str
    aliases: tuple[str, ...] = ()


LLM_BACKBONES: dict[str, LLMBackbone] = {
    "vicuna-13b": LLMBackbone(
        key="vicuna-13b",
        display="Vicuna-13B-v1.5",
        label="Vicuna-13B",
        vlmevalkit_stem="Vicuna-13B",
        text_config=dict(
            model_type="llama", vocab_size=32064, hidden_size=5120, intermediate_size=13824,
            num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
            max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
        ),
        image_token_id=32000,
        template="vicuna_v1",
        # The official finetune script's comment says `plain` for Vicuna in both stages; `plain` is
        # LLaVA-1.5's stage-1 template and cannot process multi-turn stage-2 data (docs/training.md).
        pretrain_template="plain",
        source="lmsys/vicuna-13b-v1.5 config.json; <image> row as llava-hf llava-1.5-13b-hf",
    ),
    "llama3-8b": LLMBackbone(
        key="llama3-8b",
        display="Llama-3-8B-Instruct",
        label="Llama-3-8B",
        vlmevalkit_stem="Llama3-8B",
        aliases=("Meta-Llama-3-8B-Instruct",),
        text_config=dict(
            model_type="llama", vocab_size=128320, hidden_size=4096, intermediate_size=14336,
            num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
            max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
            bos_token_id=128000, eos_token_id=128009, tie_word_embeddings=False,
        ),
        image_token_id=128256,
        template="llama_3",
        pretrain_template="llama_3",
        source="meta-llama/Meta-Llama-3-8B-Instruct config.json; <image> row as llava-hf llama3-llava-next-8b-hf",
    ),
    "qwen2-7b": LLMBackbone(
        key="qwen2-7b",
        display="Qwen2-7B-Instruct",
        label="Qwen2-7B",
        vlmevalkit_stem="Qwen2-7B",
        text_config=dict(
            model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
            num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
            bos_token_id=151643, eos_token_id=151645, tie_word_embeddings=False,
        ),
        image_token_id=151646,
        template="qwen_2",
        pretrain_template="qwen_2",
        source="Qwen/Qwen2-7B-Instruct config.json; <image> = first free row after the 151646 tokens",
    ),
    "tiny": LLMBackbone(
        key="tiny",
        display="tiny-Qwen2",
        label="tiny",
        vlmevalkit_stem="",
        # vocab_size and image_token_id are replaced by the locally built tokenizer's values.
        text_config=dict(
            model_type="qwen2", vocab_size=1024, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
            tie_word_embeddings=False,
        ),
        image_token_id=1023,
        # qwen_2 without its system text: a third of every tiny sequence otherwise (docs/demo.md).
        template="qwen_2_bare",
        pretrain_template="qwen_2_bare",
        source="toy sizes for tests and the demo",
    ),
}

# Real CLIP ViT-L/14-336 sizes are the TGLlavaConfig defaults; the tiny towers are written here.
_TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    image_size=56, patch_size=14, projection_dim=32,
)
#: Merges of the real CLIP BPE kept for the tiny guide tokenizer: 1000 merges give a valid CLIP
#: BPE of 1514 tokens (256 bytes x 2 + merges + start/end), ids 1512/1513 for start/end.
TINY_GUIDE_MERGES = 1000
_TINY_GUIDE = dict(
    hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, projection_dim=24,
    vocab_size=1514, bos_token_id=1512, eos_token_id=1513, pad_token_id=1513,
)
# Deliberately different widths from the vision tower so that a swapped dimension cannot pass.
_TINY_QFORMER = dict(
    hidden_size=40, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
    cross_attention_frequency=2, layer_norm_eps=1e-12,
)
_TINY_PERCEIVER = dict(
    hidden_size=48, resampler_depth=2, resampler_n_latents=8, resampler_n_heads=4,
    resampler_head_dim=12, num_key_value_heads=2, rms_norm_eps=1e-5,
)

#: Tiny SigLIP towers. Vision: 60 px / patch 14 -> 4 × 4 patches with a remainder the patch
#: convolution drops, as so400m's 384 px / 14; no attention-pooling head (never read). Guide: 64
#: positions (SigLIP's own), a pooled ``head`` narrower than the width so that a swapped width cannot
#: pass, vocabulary and ids replaced by the locally trained SentencePiece tokenizer's.
_TINY_SIGLIP_VISION = dict(
    model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, image_size=60, patch_size=14, vision_use_head=False,
)
#: Vocabulary of the tiny SigLIP guide's SentencePiece model (the most the built-in corpus supports
#: with room to spare; ``processing.tokenizers.build_sentencepiece_guide_tokenizer``).
TINY_SIGLIP_GUIDE_VOCAB = 256
_TINY_SIGLIP_GUIDE = dict(
    model_type="siglip_text_model", hidden_size=24, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=64, projection_size=20,
    vocab_size=TINY_SIGLIP_GUIDE_VOCAB, bos_token_id=None, eos_token_id=1, pad_token_id=1,
)
#: SigLIP so400m/14-384 (``google/siglip-so400m-patch14-384`` config.json). ``vision_use_head``
#: False: the attention-pooling head is never read (TG-LLaVA uses hidden states, as llava-hf's
#: SigLIP-based LLaVA-OneVision configs); assembling drops its weights with that reason.
_SIGLIP_SO400M_VISION = dict(
    model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
    num_attention_heads=16, image_size=384, patch_size=14, vision_use_head=False,
)
#: The text tower of the same file; vocabulary 32000 and 64 positions are the ``SiglipTextConfig``
#: defaults it relies on. Its ``</s>`` (id 1) is eos and pad, no bos (SigLIP's tokenizer); the
#: file's unset bos/eos defaults 49406/49407 are CLIP ids outside this vocabulary.
_SIGLIP_SO400M_TEXT = dict(
    model_type="siglip_text_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
    num_attention_heads=16, vocab_size=32000, max_position_embeddings=64,
    bos_token_id=None, eos_token_id=1, pad_token_id=1,
)


@dataclass(frozen=True)
class TowerFamily:
    """One family of frozen towers (vision and text) at real and tiny sizes.

    Attributes:
        key: ``clip`` or ``siglip``.
        vision_label / guide_label: How tables name the family's vision / text tower.
        vision_config / guide_config: ``TGLlavaConfig`` sub-config dicts at real size; ``None`` =
            the config's defaults (CLIP ViT-L/14-336 and CLIP-L text).
        tiny_vision_config / tiny_guide_config: The same at toy sizes.
        source: Where the real sizes come from.
    """

    key: str
    vision_label: str
    guide_label: str
    vision_config: dict[str, Any] | None
    guide_config: dict[str, Any] | None
    tiny_vision_config: dict[str, Any]
    tiny_guide_config: dict[str, Any]
    source: str


TOWER_FAMILIES: dict[str, TowerFamily] = {
    "clip": TowerFamily(
        "clip", "CLIP ViT-L/14-336", "CLIP-L text", None, None, _TINY_VISION, _TINY_GUIDE,
        "openai/clip-vit-large-patch14-336 config.json",
    ),
    "siglip": TowerFamily(
        "siglip", "SigLIP so400m/14-384", "SigLIP so400m text", _SIGLIP_SO400M_VISION, _SIGLIP_SO400M_TEXT,
        _TINY_SIGLIP_VISION, _TINY_SIGLIP_GUIDE,
        "google/siglip-so400m-patch14-384 config.json (vision and text widths 1152, MLP 4304, 27 layers, "
        "16 heads; 384 px, patch 14; text vocabulary 32000 and 64 positions = SiglipTextConfig defaults)",
    ),
}


@dataclass(frozen=True)
class Towers:
    """Which family the vision tower and the guide tower come from, and how names say so.

    Attributes:
        key: ``clip`` (the paper's), ``siglip-guide``, ``siglip-vision`` or ``siglip`` (both).
        vision: The vision tower's family (:data:`TOWER_FAMILIES`).
        guide: The guide tower's family.
        name_suffix: Appended to the variant name (``tg-llava-qwen2-7b-siglip-guide``).
        vlmevalkit_suffix: Appended to the VLMEvalKit preset name (``TG-LLaVA-Qwen2-7B-SigLIP-Guide``).
        short: The switch in a few words (``SigLIP guide``), for variant labels.
    """

    key: str
    vision: TowerFamily
    guide: TowerFamily
    name_suffix: str
    vlmevalkit_suffix: str
    short: str

    @property
    def label(self) -> str:
        """The towers in one phrase (``SigLIP so400m/14-384 vision, SigLIP so400m text guide``)."""
        return f"{self.vision.vision_label} vision, {self.guide.guide_label} guide"

    @property
    def is_paper(self) -> bool:
        """The paper's towers (CLIP ViT-L/14-336 and its text tower)."""
        return self.vision.key == self.guide.key == "clip"

    @property
    def source(self) -> str:
        """Provenance of the towers' sizes."""
        families = {family.key: family for family in (self.vision, self.guide)}
        return "; ".join(f"{key}: {family.source}" for key, family in families.items())


#: The tower sets: the paper's CLIP pair and the SigLIP switches (guide, vision, both).
TOWER_SETS: dict[str, Towers] = {
    t.key: t
    for t in (
        Towers("clip", TOWER_FAMILIES["clip"], TOWER_FAMILIES["clip"], "", "", "CLIP towers"),
        Towers("siglip-guide", TOWER_FAMILIES["clip"], TOWER_FAMILIES["siglip"], "-siglip-guide", "-SigLIP-Guide",
               "SigLIP guide"),
        Towers("siglip-vision", TOWER_FAMILIES["siglip"], TOWER_FAMILIES["clip"], "-siglip-vision", "-SigLIP-Vision",
               "SigLIP vision"),
        Towers("siglip", TOWER_FAMILIES["siglip"], TOWER_FAMILIES["siglip"], "-siglip", "-SigLIP",
               "SigLIP vision and guide"),
    )
}

#: The paper's three LLMs, in the order of its main table.
PAPER_LLMS: tuple[str, ...] = ("vicuna-13b", "llama3-8b", "qwen2-7b")

METHOD_TG_LLAVA = "TG-LLaVA"
METHOD_LLAVA_15 = "LLaVA-1.5"


@dataclass(frozen=True)
class Switches:
    """Which TG modules a variant has, and how its name and labels say so.

    Attributes:
        key: The switch set's id (``tg``, ``baseline``, ``no-fom``, ``no-dp``).
        text_guided_mask: TG-FOM on (``use_text_guided_mask``).
        detail_perceiver: TG-DP on (``use_detail_perceiver``).
        method: The method family in tables: TG-LLaVA, or LLaVA-1.5 for the baseline of the same
            code (the ablations are TG-LLaVA with one module off).
        label: What the variant is, in one phrase (logs, ``run.py --help``).
        name_suffix: Appended to the variant name (``tg-llava-qwen2-7b-no-fom``).
        vlmevalkit_suffix: Appended to the VLMEvalKit preset name (``TG-LLaVA-Qwen2-7B-no-FOM``).
    """

    key: str
    text_guided_mask: bool
    detail_perceiver: bool
    method: str
    label: str
    name_suffix: str
    vlmevalkit_suffix: str

    @property
    def config_fields(self) -> dict[str, bool]:
        """The two ``TGLlavaConfig`` switches."""
        return dict(use_text_guided_mask=self.text_guided_mask, use_detail_perceiver=self.detail_perceiver)


#: The four switch sets of every LLM.
SWITCHES: dict[str, Switches] = {
    s.key: s
    for s in (
        Switches("tg", True, True, METHOD_TG_LLAVA, "TG-LLaVA", "", ""),
        Switches("baseline", False, False, METHOD_LLAVA_15, "LLaVA-1.5 baseline (same code, TG modules off)", "", "-TG-Baseline"),
        Switches("no-fom", False, True, METHOD_TG_LLAVA, "TG-LLaVA w/o TG-FOM", "-no-fom", "-no-FOM"),
        Switches("no-dp", True, False, METHOD_TG_LLAVA, "TG-LLaVA w/o TG-DP", "-no-dp", "-no-DP"),
    )
}


@dataclass(frozen=True)
class Variant:
    """A named preset.

    Attributes:
        name: Preset name (``tg-llava-qwen2-7b``).
        switches: Which TG modules it has (:data:`SWITCHES`).
        backbone: The LLM.
        tiny: Toy towers instead of real-size ones.
        provenance: Where the numbers come from.
        towers: Vision and guide tower families (:data:`TOWER_SETS`; the paper's CLIP pair by default).
        vlmevalkit_name: Its VLMEvalKit ``--model`` preset (``TG-LLaVA-Qwen2-7B``); ``None`` for the
            tiny presets, which are run through the generic ``tg_llava`` preset.
        vlmevalkit_aliases: Other toolkit model names that identify this variant in score files
            (the short baseline names ``LLaVA-1.5-<LLM>-TG``); not registered as presets.
        lmms_eval_id: Its lmms-eval ``--model`` id (``tg_llava_qwen2_7b``); ``None`` for the tiny
            presets, which are run through the generic ``tg_llava`` id.
        extra: Further ``TGLlavaConfig`` fields of this preset.
    """

    name: str
    switches: Switches
    backbone: LLMBackbone
    tiny: bool = False
    provenance: str = ""
    vlmevalkit_name: str | None = None
    vlmevalkit_aliases: tuple[str, ...] = ()
    lmms_eval_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    towers: Towers = TOWER_SETS["clip"]

    @property
    def method(self) -> str:
        """The method family (TG-LLaVA or LLaVA-1.5) shown in tables."""
        return self.switches.method

    @property
    def label(self) -> str:
        """What the variant is, in one phrase (``TG-LLaVA w/o TG-FOM``; other towers than the
        paper's are named: ``TG-LLaVA, SigLIP guide``)."""
        return self.switches.label if self.towers.is_paper else f"{self.switches.label}, {self.towers.short}"

    @property
    def tower_label(self) -> str:
        """The towers in one phrase, for tables (:attr:`Towers.label`; ``toy …`` for tiny presets)."""
        return f"toy {self.towers.short}" if self.tiny else self.towers.label

    @property
    def llm(self) -> str:
        """The LLM's full name (``Qwen2-7B-Instruct``), as run manifests record it."""
        return self.backbone.display

    @property
    def llm_label(self) -> str:
        """The LLM's label in tables (``Qwen2-7B``)."""
        return self.backbone.label

    @property
    def description(self) -> str:
        """One line for ``run.py --help`` and the docs."""
        return f"{self.label}, {self.backbone.display} LLM"

    @property
    def template(self) -> str:
        """Conversation template for stage 2 and inference."""
        return self.backbone.template

    @property
    def pretrain_template(self) -> str:
        """Conversation template for stage 1 (as the official scripts use it)."""
        return self.backbone.pretrain_template

    def config(self, **overrides: Any) -> TGLlavaConfig:
        """Build the ``TGLlavaConfig`` of this preset (imports transformers).

        Args:
            **overrides: Top-level config fields to replace; ``text_config`` / ``guide_config``
                dict overrides are merged into the preset's sub-config.

        Returns:
            A validated config.
        """
        from .modeling.configuration_tg_llava import TGLlavaConfig

        text_config = copy.deepcopy(self.backbone.text_config)
        text_config.update(overrides.pop("text_config", {}))
        kwargs: dict[str, Any] = dict(
            text_config=text_config,
            image_token_id=self.backbone.image_token_id,
            template=self.backbone.template,
            variant=self.name,
            **self.switches.config_fields,
        )
        vision_family, guide_family = self.towers.vision, self.towers.guide
        if self.tiny:
            guide = dict(guide_family.tiny_guide_config)
            guide.update(overrides.pop("guide_config", {}))
            kwargs.update(
                vision_config=dict(vision_family.tiny_vision_config),
                guide_config=guide,
                qformer_config=dict(_TINY_QFORMER),
                perceiver_config=dict(_TINY_PERCEIVER),
            )
        else:
            if vision_family.vision_config is not None:
                kwargs["vision_config"] = dict(vision_family.vision_config)
            if "guide_config" in overrides:
                kwargs["guide_config"] = overrides.pop("guide_config")
            elif guide_family.guide_config is not None:
                kwargs["guide_config"] = dict(guide_family.guide_config)
        kwargs.update(self.extra)
        kwargs.update(overrides)
        return TGLlavaConfig(**kwargs)


def _lmms_eval_id(name: str) -> str:
    """lmms-eval ids are Python-identifier-like: ``tg-llava-qwen2-7b`` -> ``tg_llava_qwen2_7b``."""
    return name.replace("-", "_").replace(".", "_")


def _build_registry() -> dict[str, Variant]:
    variants: dict[str, Variant] = {}
    paper = "TG-LLaVA (Yan et al., AAAI 2025); official code AIDC-AI/TG-LLaVA@0009eb8"
    for key in PAPER_LLMS:
        backbone = LLM_BACKBONES[key]
        tg_source = f"{paper}; LLM: {backbone.source}; vision: openai/clip-vit-large-patch14-336"
        baseline_source = (
            f"LLaVA-1.5 (Liu et al., CVPR 2024) recipe on {backbone.display}; same code with both TG switches off"
        )
        for switches in SWITCHES.values():
            baseline = switches.method == METHOD_LLAVA_15
            prefix = "llava-1.5" if baseline else "tg-llava"
            name = f"{prefix}-{key}{switches.name_suffix}"
            display_prefix = "LLaVA-1.5" if baseline else "TG-LLaVA"
            stem = f"{display_prefix}-{backbone.vlmevalkit_stem}"
            variants[name] = Variant(
                name, switches, backbone,
                provenance=baseline_source if baseline else tg_source,
                vlmevalkit_name=stem + switches.vlmevalkit_suffix,
                vlmevalkit_aliases=(f"{stem}-TG",) if baseline else (),
                lmms_eval_id=_lmms_eval_id(name),
            )
        # The SigLIP tower switches, on the full model (both TG modules on).
        for towers in (t for t in TOWER_SETS.values() if not t.is_paper):
            name = f"tg-llava-{key}{towers.name_suffix}"
            variants[name] = Variant(
                name, SWITCHES["tg"], backbone, towers=towers,
                provenance=f"{paper} (README: switch the text tower to SigLIP; beyond the official code, no parity "
                           f"reference); LLM: {backbone.source}; towers: {towers.source}",
                vlmevalkit_name=f"TG-LLaVA-{backbone.vlmevalkit_stem}{towers.vlmevalkit_suffix}",
                lmms_eval_id=_lmms_eval_id(name),
            )
    tiny = LLM_BACKBONES["tiny"]
    for switches in SWITCHES.values():
        suffix = "-baseline" if switches.method == METHOD_LLAVA_15 else switches.name_suffix
        variants[f"tiny{suffix}"] = Variant(f"tiny{suffix}", switches, tiny, tiny=True, provenance=tiny.source)
    for towers in (t for t in TOWER_SETS.values() if not t.is_paper):
        name = f"tiny{towers.name_suffix}"
        variants[name] = Variant(name, SWITCHES["tg"], tiny, tiny=True, towers=towers,
                                 provenance=f"{tiny.source}; tiny {towers.label}")
    return variants


VARIANTS: dict[str, Variant] = _build_registry()


def get_variant(name: str) -> Variant:
    """Look a preset up by name.

    Raises:
        TGLlavaConfigError: Unknown name (the message names the closest known ones and lists all).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), VARIANTS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise TGLlavaConfigError(f"unknown variant {name!r}{hint}; known: {', '.join(VARIANTS)}") from None


def list_variants() -> list[str]:
    """All preset names."""
    return list(VARIANTS)


# --------------------------------------------------------------------------------------------------
# Is a checkpoint the variant it claims to be?
# --------------------------------------------------------------------------------------------------
#: Config fields that identify a variant: the conversation template, the two TG switches and the
#: tower/LLM shapes. Trained or converted checkpoints of a variant keep all of them (the vocabulary
#: size is left out: fine-tuning may add tokens). ``run.py``, the VLMEvalKit wrapper and the
#: lmms-eval wrapper all check these and only these.
IDENTITY_FIELDS: tuple[str, ...] = (
    "template",
    "use_text_guided_mask",
    "use_detail_perceiver",
    "text_config.model_type",
    "text_config.hidden_size",
    "text_config.num_hidden_layers",
    "vision_config.model_type",
    "guide_config.model_type",
    "vision_config.hidden_size",
    "vision_config.image_size",
    "vision_config.patch_size",
)


def _config_field(config: Any, dotted: str) -> Any:
    """``config.a.b`` for ``dotted="a.b"`` (``None`` where an attribute is absent)."""
    value = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value


def variant_mismatches(config: Any, variant: str) -> dict[str, tuple[Any, Any]]:
    """Compare a checkpoint's config with a named variant on :data:`IDENTITY_FIELDS`.

    Args:
        config: The checkpoint's ``TGLlavaConfig``.
        variant: A name known to :func:`get_variant`.

    Returns:
        ``{field: (checkpoint value, variant value)}`` for every differing field (empty = match).

    Raises:
        TGLlavaConfigError: from :func:`get_variant` for an unknown name.
    """
    expected = get_variant(variant).config()
    differences = {}
    for name in IDENTITY_FIELDS:
        have, want = _config_field(config, name), _config_field(expected, name)
        if have != want:
            differences[name] = (have, want)
    return differences


def recognise_variant(config: Any) -> str | None:
    """The variant a checkpoint's config is: its recorded ``config.variant`` if that still matches on
    :data:`IDENTITY_FIELDS`, else the single variant that matches on them.

    Args:
        config: The checkpoint's ``TGLlavaConfig``.

    Returns:
        A variant name, or ``None`` when no variant (or more than one) matches.
    """
    recorded = getattr(config, "variant", None)
    if recorded in VARIANTS and not variant_mismatches(config, recorded):
        return recorded
    matches = [name for name in VARIANTS if not variant_mismatches(config, name)]
    return matches[0] if len(matches) == 1 else None


def check_variant(config: Any, variant: str, *, source: str, hint: str = "") -> None:
    """Refuse a checkpoint that is not the variant a run names.

    Args:
        config: The checkpoint's ``TGLlavaConfig``.
        variant: The variant the run asks for.
        source: The checkpoint path, for the message.
        hint: What the user can do instead, appended to the message.

    Raises:
        TGLlavaConfigError: Naming every field of :data:`IDENTITY_FIELDS` that differs, with the
            checkpoint's and the variant's values; or an unknown variant name.
    """
    differences = variant_mismatches(config, variant)
    if differences:
        details = "; ".join(f"{name}: checkpoint {have!r} vs variant {want!r}" for name, (have, want) in differences.items())
        raise TGLlavaConfigError(
            f"checkpoint {source} is not a {variant} checkpoint ({details})" + (f"; {hint}" if hint else "")
        )


__all__ = [
    "IDENTITY_FIELDS", "LLM_BACKBONES", "METHOD_LLAVA_15", "METHOD_TG_LLAVA", "PAPER_LLMS", "SWITCHES",
    "TINY_GUIDE_MERGES", "TINY_SIGLIP_GUIDE_VOCAB", "TOWER_FAMILIES", "TOWER_SETS", "VARIANTS", "LLMBackbone",
    "Switches", "TowerFamily", "Towers", "Variant", "check_variant", "get_variant", "list_variants",
    "recognise_variant", "variant_mismatches",
]
