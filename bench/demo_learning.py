"""Learning curves of the demo's tiny models on the synthetic benchmark (prints JSON).

``make demo`` must show trained tiny models answering above chance within minutes on a CPU; this
benchmark measures how far a schedule gets, without the toolkits in the loop, so that schedules
and model settings can be compared quickly (docs/demo.md records what was measured).

What runs: a ``tiny`` / ``tiny-baseline`` checkpoint assembled from pretrained parts as ``make demo``
assembles them (``--components DIR``: ``DIR/clip`` + ``DIR/llm``, default the demo's), or random
weights with ``--random-init`` —
optionally ``--stage1-steps`` of stage 1 (the pretrain recipe's groups on the caption rows), then
the stage-2 recipe's trainable groups (projector, TG modules, LLM) on the stage-2 rows, with the
package's own dataset, collator and processor, AdamW + the recipe's cosine schedule with warmup,
gradient clipping at 1.0 (the Trainer's default).

Every ``--eval-every`` steps the held-out questions of the lmms-eval task folders (the same items
as the VLMEvalKit TSVs) are scored teacher-forced: an item counts as right when the argmax at the
answer's first token is that token (a letter for MCQ, Yes/No, the short answer). Accuracy per
question kind and category, with the card's chance levels next to it.

Usage::

    python bench/demo_learning.py [--variant tiny --variant tiny-baseline] [--steps 1500]
        [--eval-every 250] [--batch 16] [--lr 2e-3] [--stage2-rows 12000] [--data DIR] [--threads 1]
        [--components DIR | --random-init] [--stage1-steps 200 --stage1-lr 1e-3] [--device cuda]

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
from bench_common import keep_stdout_for_json  # noqa: E402 - bench/ is the script folder
from transformers import get_cosine_schedule_with_warmup

from tg_llava_eval.checkpoints.assembling import assemble_checkpoint
from tg_llava_eval.checkpoints.creating import create_checkpoint
from tg_llava_eval.demo import DemoSettings
from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
from tg_llava_eval.demo.synthetic.questions import Question, instruction_text
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor
from tg_llava_eval.training.data import LazySupervisedDataset, TrainingCollator
from tg_llava_eval.training.recipe import get_recipe
from tg_llava_eval.training.stages import apply_stage_groups

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


def train_steps(model, dataset, collator, *, recipe, steps: int, lr: float, args, device,
                evaluate_at=None) -> list[dict]:
    """``steps`` optimiser steps of ``recipe``'s groups on ``dataset`` (batches of ``args.batch``, the
    recipe's schedule); ``evaluate_at(step)`` returns a curve point or ``None``."""
    apply_stage_groups(model, recipe.trainable_groups)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=recipe.weight_decay)
    # The schedule the Trainer builds for the recipe's lr_scheduler_type="cosine" + warmup_ratio.
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(recipe.warmup_ratio * steps), steps)
    generator = torch.Generator().manual_seed(args.seed)
    order: list[int] = []
    losses: list[float] = []
    curve = []
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        if len(order) < args.batch:
            order += torch.randperm(len(dataset), generator=generator).tolist()
        indices, order = order[:args.batch], order[args.batch:]
        batch = collator([dataset[i] for i in indices])
        batch.pop("skipped_rows")
        loss = model(**_to(batch, device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        point = evaluate_at(step) if evaluate_at is not None else None
        if point is not None:
            window = losses[-LOSS_WINDOW:]
            curve.append({"step": step, "loss": round(sum(window) / len(window), 4),
                          "seconds": round(time.perf_counter() - start, 1), **point})
            logger.info("step %d: %s", step, curve[-1])
    return curve


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def learning_curve(variant: str, data, workdir: Path, args) -> list[dict]:
    """Train one model for ``args.steps`` stage-2 steps (after ``args.stage1_steps`` of stage 1);
    evaluate every ``args.eval_every``."""
    recipe = get_recipe("finetune")
    device = torch.device(args.device)
    if not args.random_init:
        checkpoint = assemble_checkpoint(variant, workdir / f"init-{variant}", vision=args.components / "clip",
                                         llm=args.components / "llm", seed=args.seed)
    else:
        checkpoint = create_checkpoint(variant, workdir / f"init-{variant}", seed=args.seed)
    processor = TGLlavaProcessor.from_pretrained(checkpoint)
    model = TGLlavaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).to(device)
    collator = TrainingCollator(processor)
    if args.stage1_steps:
        captions = LazySupervisedDataset(data.stage1_json, data.image_dir, processor,
                                         max_length=recipe.model_max_length)
        train_steps(model, captions, collator, recipe=get_recipe("pretrain"), steps=args.stage1_steps,
                    lr=args.stage1_lr, args=args, device=device)
    dataset = LazySupervisedDataset(data.stage2_json, data.image_dir, processor, max_length=recipe.model_max_length)
    batches = [(names, _to(batch, device), labels.to(device))
               for names, batch, labels in held_out_batches(held_out_items(data), processor, collator)]

    def evaluate_at(step: int):
        if step % args.eval_every and step != args.steps:
            return None
        accuracy = evaluate(model, batches)
        return {"overall": accuracy.pop("overall"), "accuracy": accuracy}

    return train_steps(model, dataset, collator, recipe=recipe, steps=args.steps, lr=args.lr, args=args,
                       device=device, evaluate_at=evaluate_at)


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
    parser.add_argument("--components", type=Path, default=Path(defaults.components),
                        help="assemble the models from DIR/clip and DIR/llm (default: the demo's pretrained parts)")
    parser.add_argument("--random-init", action="store_true", help="random weights instead of the parts")
    parser.add_argument("--stage1-steps", type=int, default=0, help="stage-1 steps before stage 2 (default: none)")
    parser.add_argument("--stage1-lr", type=float, default=defaults.pretrain_lr)
    parser.add_argument("--stage1-rows", type=int, default=defaults.n_stage1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    keep_stdout_for_json()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = generate_synthetic_dataset(
            args.data or workdir / "data", seed=defaults.seed, n_train_stage1=args.stage1_rows,
            n_train_stage2=args.stage2_rows, n_test=defaults.n_test, image_size=defaults.image_size, overwrite=True,
        )
        curves = {variant: learning_curve(variant, data, workdir, args)
                  for variant in (args.variant or ["tiny", "tiny-baseline"])}
    print(json.dumps({"benchmark": "demo_learning", "device": args.device, "threads": args.threads,
                      "components": None if args.random_init else str(args.components),
                      "stage1_steps": args.stage1_steps, "stage1_lr": args.stage1_lr, "steps": args.steps,
                      "batch": args.batch, "lr": args.lr, "stage2_rows": args.stage2_rows,
                      "chance": data.card["chance_level"], "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
