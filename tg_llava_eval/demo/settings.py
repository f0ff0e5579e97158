"""What the demo trains and with which sizes: :class:`DemoSettings`, :class:`DemoResult` and the
table names of the demo's models (:data:`TRAINED`, :data:`INFERENCE_ABLATIONS`).

Plain data (no torch, no pandas), read by the command line (``tg-llava-eval demo``), the phases'
fingerprints and the pipeline. Why these sizes and schedules: ``docs/demo.md``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

#: The pretrained tiny CLIP (``clip/``) and LLM (``llm/``) the trained models are assembled from,
#: made once by ``tools/pretrain_tiny_components.py`` (its command and curves in ``pretraining.json``).
COMPONENTS_DIR = Path(__file__).resolve().parents[1] / "demo_components"
#: Trained models: name in tables -> preset.
TRAINED = {"TG-LLaVA-tiny": "tiny", "LLaVA-1.5-tiny": "tiny-baseline"}
#: Inference-time ablations of the trained TG model: name -> (preset, TG-FOM on, TG-DP on).
INFERENCE_ABLATIONS = {
    "TG-LLaVA-tiny-noFOM-inference": ("tiny-no-fom", False, True),
    "TG-LLaVA-tiny-noDP-inference": ("tiny-no-dp", True, False),
}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes and schedules of the demo (the defaults fit ≤ 10 minutes on 2 CPU cores).

    Attributes:
        seed: Seed of the data and of training.
        n_stage1, n_stage2: Training rows of stage 1 (captions) and stage 2 (instructions).
        n_test: Held-out questions per kind (MCQ, yes/no, short answer).
        image_size: Side of the synthetic images (the tiny vision tower's input size).
        pretrain_steps, finetune_steps: Optimiser steps per stage.
        batch_size: Per-device batch.
        gradient_accumulation_steps: Micro-batches per optimiser step in both stages; ``None``
            keeps each stage recipe's own value.
        pretrain_lr, finetune_lr: Learning rates (the paper's 1e-3 / 2e-5; the tiny LLM, 2 layers
            of 64, needs a larger stage-2 rate to learn reading images within the budget).
        lmms_batch_size: lmms-eval ``--batch_size``.
        components: Folder with the pretrained ``clip/`` and ``llm/`` both models are assembled from
            (as LLaVA starts from a pretrained CLIP and LLM); ``None`` starts from random weights.
    """

    seed: int = 0
    n_stage1: int = 3200
    n_stage2: int = 9600
    n_test: int = 60
    image_size: int = 56
    pretrain_steps: int = 200
    finetune_steps: int = 300
    batch_size: int = 16
    gradient_accumulation_steps: int | None = None
    pretrain_lr: float = 1e-3
    finetune_lr: float = 1e-3
    lmms_batch_size: int = 8
    components: str | None = str(COMPONENTS_DIR)

    @classmethod
    def quick(cls) -> DemoSettings:
        """A shortened run for the test suite (every artefact, few steps)."""
        return cls(n_stage1=24, n_stage2=48, n_test=4, pretrain_steps=2, finetune_steps=3, batch_size=4)


@dataclasses.dataclass
class DemoResult:
    """Paths and figures of a finished demo."""

    out: Path
    phase_seconds: dict[str, float]
    reused: list[str]
    results_csv: Path
    leaderboard_dir: Path
    ablation_report: Path
    accuracy_table: list[dict[str, Any]]
    summary_path: Path


__all__ = ["COMPONENTS_DIR", "DemoResult", "DemoSettings", "INFERENCE_ABLATIONS", "TRAINED"]
