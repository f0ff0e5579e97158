"""Learning curves of the demo's tiny models on the synthetic benchmark (prints JSON).

``make demo`` must show trained tiny models answering above chance within minutes on a CPU; this
benchmark measures how far a schedule gets, without the toolkits in the loop, so that schedules
and model settings can be compared quickly (docs/demo.md records what was measured).

What runs: the stage-2 recipe's trainable groups (projector, TG modules, LLM) of a fresh
random-init ``tiny`` / ``tiny-baseline`` checkpoint, trained on the synthetic stage-2 rows with the
package's own dataset, collator and processor, AdamW + the recipe's cosine schedule with warmup,
gradient clipping at 1.0 (the Trainer's default). Stage 1 is skipped: it trains the adapters
against a frozen *random* LLM, which teaches the tiny models nothing they need here.

Every ``--eval-every`` steps the held-out questions of the lmms-eval task folders (the same items
as the VLMEvalKit TSVs) are scored teacher-forced: an item counts as right when the argmax at the
answer's first token is that token (a letter for MCQ, Yes/No, the short answer). Accuracy per
question kind and category, with the card's chance levels next to it.

Usage::

    python bench/demo_learning.py [--variant tiny --variant tiny-baseline] [--steps 1500]
        [--eval-every 250] [--batch 16] [--lr 2e-3] [--stage2-rows 12000] [--data DIR] [--threads 1]

Output::

    {"benchmark": "demo_learning", "steps": ..., "chance": {kind: {"uniform", "majority", "question_prior"}},
     "curves": {variant: [{"step": s, "loss": l, "seconds": t, "overall": a,
                           "accuracy": {"mcq/colour_at": a, ...}}, ...]}}
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from tg_llava_eval.create import create_checkpoint
from tg_llava_eval.demo import DemoSettings
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor
from tg_llava_eval.training.data import LazySupervisedDataset, TrainingCollator
from tg_llava_eval.training.recipe import get_recipe
from tg_llava_eval.training.stages import apply_stage_groups
from tg_llava_eval.training.synthetic import generate_synthetic_dataset
from tg_llava_eval.training.synthetic_questions import Question, instruction_text

logger = logging.getLogger("bench.demo_learning")
#: Held-out items scored per forward pass.
EVAL_BATCH = 20
#: Training loss reported at an evaluation point: the mean over this many last steps.
LOSS_WINDOW = 20
#: The Trainer's default ``max_grad_norm``.
MAX_GRAD_NORM = 1.0


def held_out_items(data) -> list[tuple[str, list[dict], Path]]:
    """``(kind/category, conversation, image path)`` of every held-out question of ``data``."""
    items = []
    for kind in ("mcq", "yorn", "vqa"):
        folder = data.lmms_include_path / data.lmms_tasks[kind]
        for line in (folder / "data" / "test.jsonl").read_text().splitlines():
            doc = json.loads(line)
            question = Question(kind, doc["category"], doc["question"], tuple(doc["options"]), doc["answer"],
                                doc["answer_text"])
            conversation = [{"from": "human", "value": "<image>\n" + instruction_text(question)},
                            {"from": "gpt", "value": question.answer}]
            items.append((f"{kind}/{doc['category']}", conversation, folder / doc["image_path"]))
    return items


def held_out_batches(items, processor, collator) -> list[tuple[list[str], dict, torch.Tensor]]:
    """``(names, model inputs, labels)`` per :data:`EVAL_BATCH` items, built once per curve."""
    batches = []
    for start in range(0, len(items), EVAL_BATCH):
        chunk = items[start:start + EVAL_BATCH]
        batch = collator([{"sample": processor.tokenize_training_sample(conversation, True, max_length=None),
                           "image": processor.preprocess_image(path, source=str(path)), "skipped": ()}
                          for _, conversation, path in chunk])
        batch.pop("skipped_rows")
        labels = batch.pop("labels")
        batches.append(([name for name, _, _ in chunk], batch, labels))
    return batches


@torch.no_grad()
def evaluate(model, batches) -> dict[str, float]:
    """Teacher-forced first-answer-token accuracy (%) per kind/category, and ``overall``."""
    model.eval()
    right: dict[str, list[bool]] = {}
    for names, batch, labels in batches:
        logits = model(**batch).logits
        for row, name in enumerate(names):
            first = int((labels[row] != -100).nonzero()[0])
            right.setdefault(name, []).append(int(logits[row, first - 1].argmax()) == int(labels[row, first]))
    model.train()
    accuracy = {name: round(100 * sum(v) / len(v), 1) for name, v in sorted(right.items())}
    every = [x for v in right.values() for x in v]
    return {"overall": round(100 * sum(every) / len(every), 1), **accuracy}


def learning_curve(variant: str, data, workdir: Path, args) -> list[dict]:
    """Train one fresh model for ``args.steps`` steps; evaluate every ``args.eval_every``."""
    recipe = get_recipe("finetune")
    checkpoint = create_checkpoint(variant, workdir / f"init-{variant}", seed=args.seed)
    processor = TGLlavaProcessor.from_pretrained(checkpoint)
    model = TGLlavaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    apply_stage_groups(model, recipe.trainable_groups)
    dataset = LazySupervisedDataset(data.stage2_json, data.image_dir, processor, max_length=recipe.model_max_length)
    collator = TrainingCollator(processor)
    batches = held_out_batches(held_out_items(data), processor, collator)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=recipe.weight_decay)
    # The schedule the Trainer builds for the recipe's lr_scheduler_type="cosine" + warmup_ratio.
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(recipe.warmup_ratio * args.steps), args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    order: list[int] = []
    losses: list[float] = []
    curve = []
    start = time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            order += torch.randperm(len(dataset), generator=generator).tolist()
        indices, order = order[:args.batch], order[args.batch:]
        batch = collator([dataset[i] for i in indices])
        batch.pop("skipped_rows")
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            accuracy = evaluate(model, batches)
            window = losses[-LOSS_WINDOW:]
            curve.append({"step": step, "loss": round(sum(window) / len(window), 4),
                          "seconds": round(time.perf_counter() - start, 1), "overall": accuracy.pop("overall"),
                          "accuracy": accuracy})
            logger.info("%s step %d: %s", variant, step, curve[-1])
    return curve


def main() -> None:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", help="preset(s) to train (default: tiny and tiny-baseline)")
    parser.add_argument("--steps", type=int, default=defaults.finetune_steps)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.finetune_lr)
    parser.add_argument("--stage2-rows", type=int, default=defaults.n_stage2)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--data", type=Path, help="folder to write the synthetic dataset to (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = generate_synthetic_dataset(
            args.data or workdir / "data", seed=defaults.seed, n_train_stage1=defaults.n_stage1,
            n_train_stage2=args.stage2_rows, n_test=defaults.n_test, image_size=defaults.image_size, overwrite=True,
        )
        curves = {variant: learning_curve(variant, data, workdir, args)
                  for variant in (args.variant or ["tiny", "tiny-baseline"])}
    print(json.dumps({"benchmark": "demo_learning", "device": "cpu", "threads": args.threads, "steps": args.steps,
                      "batch": args.batch, "lr": args.lr, "stage2_rows": args.stage2_rows,
                      "chance": data.card["chance_level"], "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
