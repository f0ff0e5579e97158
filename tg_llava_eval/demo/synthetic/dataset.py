"""Deterministic synthetic vision-language dataset for training and evaluating tiny TG-LLaVAs.

The paper trains on LLaVA's 558K captions and 665K instructions and evaluates on public
benchmarks; none of that can be downloaded here, and a tiny random model could not learn it
anyway. This module writes a small stand-in with the same *formats* end to end:

* **stage 1** (feature alignment): captions in LLaVA JSON, one ``<image>\\n<instruction>`` human
  turn and one caption per row (``stage1_captions.json``);
* **stage 2** (instruction tuning): LLaVA JSON conversations: multiple choice with lettered
  options, yes/no, short answers, multi-turn follow-ups about the same image, and text-only rows
  (``stage2_instructions.json``);
* **held-out test sets**, one per question kind (MCQ, Y/N, VQA), in both toolkits' offline
  formats: VLMEvalKit TSVs under ``vlmeval/`` (the ``$LMUData`` folder; base64 images) and an
  lmms-eval task folder per kind under ``lmms_eval_tasks/`` (YAML + ``data/test.jsonl`` + PNGs),
  plus a loglikelihood (``multiple_choice``) task over the MCQ items;
* ``dataset_card.json``: counts, chance levels per kind, seed, generator version, file list.

Images are coloured shapes in a grid (:mod:`~tg_llava_eval.demo.synthetic.scenes`);
about half of the questions name a cell or a row/column
(:mod:`~tg_llava_eval.demo.synthetic.questions`), so their answers depend on where things are —
the situation TG-LLaVA's text guidance targets — and the others ask about the whole image (the one
shape of a one-shape scene, or a count of all shapes), which shows whether a model reads the image
at all.

Determinism: every random choice comes from :class:`random.Random` streams seeded by
``(GENERATOR_VERSION, seed, split)``; files are written in a fixed order with fixed encodings,
so the same arguments give byte-identical files. Test scenes are drawn first and their layouts
are excluded from the training scenes (held out by content, not only by file).

Dataset names avoid the substrings that switch VLMEvalKit to special evaluation (``MMBench``,
``POPE``, ``GQA``, ...; see docs/vlmevalkit.md); the VQA set's name contains
``openended`` so that ``vlmeval.dataset.DATASET_TYPE`` reports ``VQA`` for it. Y/N sets are never
auto-detected by VLMEvalKit: ``vlmeval_data_config.json`` names the class for each set
(``ImageYORNDataset`` / ``ImageVQADataset`` / ``ImageMCQDataset``) for ``run.py --config``.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import pathlib
import random
import shutil
from collections.abc import Iterable
from typing import Any

import pandas

from tg_llava_eval.demo.synthetic import lmms_utils
from tg_llava_eval.demo.synthetic.questions import (
    KIND_CATEGORIES,
    OPTION_LETTERS,
    SHORT_ANSWER_SUFFIX,
    SINGLE_SHAPE_CATEGORIES,
    TEXT_ONLY_QA,
    YORN_SUFFIX,
    Question,
    instruction_text,
    make_question,
)
from tg_llava_eval.demo.synthetic.scenes import (
    COLOURS,
    SHAPES,
    Scene,
    check_geometry,
    encode_png,
    render_scene,
    sample_scene,
)

logger = logging.getLogger(__name__)

#: Bumped whenever the generated content changes for a given seed (recorded in the card).
GENERATOR_VERSION = "2"

#: Stage-1 instructions (LLaVA's brief-description prompts, as in the 558K captions set).
CAPTION_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.",
    "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Write a terse but informative summary of the picture.",
)

#: VLMEvalKit dataset class and lmms-eval output type per question kind.
VLMEVAL_CLASSES: dict[str, str] = {"mcq": "ImageMCQDataset", "yorn": "ImageYORNDataset", "vqa": "ImageVQADataset"}
#: Suffix of each kind's VLMEvalKit dataset name (``openended`` makes DATASET_TYPE say VQA).
VLMEVAL_NAME_SUFFIX: dict[str, str] = {"mcq": "mcq", "yorn": "yorn", "vqa": "openended"}
#: VLMEvalKit's default VQA metric is a leave-one-out score over >= 4 references
#: (min(1, matches/3)), so a single reference can never score: each answer is repeated.
VQA_REFERENCE_COPIES = 10
#: Most new tokens the lmms-eval generation tasks allow (answers are one word or a letter).
LMMS_MAX_NEW_TOKENS = 16
#: Upper bound on re-draws when a training scene collides with a held-out test layout.
MAX_SCENE_REDRAWS = 1000
#: Default share of stage-2 image rows with 2–3 question/answer pairs.
MULTI_TURN_FRACTION = 0.3
#: Default share of stage-2 rows without an image.
TEXT_ONLY_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`generate_synthetic_dataset` wrote (absolute paths).

    Attributes:
        root: the output folder.
        stage1_json: stage-1 captions (LLaVA JSON).
        stage2_json: stage-2 instructions (LLaVA JSON).
        image_dir: folder the ``image`` fields of both JSON files are relative to.
        lmudata_dir: folder to export as ``$LMUData`` for VLMEvalKit.
        vlmeval_datasets: kind -> VLMEvalKit dataset name (``<lmudata_dir>/<name>.tsv``).
        vlmeval_config: path of the ``run.py --config`` ``{"data": {...}}`` JSON.
        lmms_include_path: folder to pass as lmms-eval ``--include_path``.
        lmms_tasks: kind -> lmms-eval task name (``mcq_ll`` = the loglikelihood task).
        lmms_tag: the tag that runs every lmms-eval task of the set.
        ground_truth: JSON lines with every test question, its answer and its scene.
        card_path: ``dataset_card.json``.
        card: the card's content.
    """

    root: pathlib.Path
    stage1_json: pathlib.Path
    stage2_json: pathlib.Path
    image_dir: pathlib.Path
    lmudata_dir: pathlib.Path
    vlmeval_datasets: dict[str, str]
    vlmeval_config: pathlib.Path
    lmms_include_path: pathlib.Path
    lmms_tasks: dict[str, str]
    lmms_tag: str
    ground_truth: pathlib.Path
    card_path: pathlib.Path
    card: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TestItem:
    """One held-out question with its scene and rendered image (PNG bytes)."""

    index: int
    scene: Scene
    question: Question
    png: bytes


def _shape_range(category: str, *, located_min: int) -> tuple[int, int | None]:
    """``(min_shapes, max_shapes)`` of a scene for ``category`` (``None`` = up to every cell).

    One-shape categories need exactly one shape, ``count_all`` any number; located categories
    ask ``located_min`` or more shapes (the held-out sets use two, so "which cell" matters).
    """
    if category in SINGLE_SHAPE_CATEGORIES:
        return 1, 1
    return (1 if category == "count_all" else located_min), None


def _stream(seed: int, split: str) -> random.Random:
    """The random stream of one split; str seeds are hashed with SHA-512 (stable across runs)."""
    return random.Random(f"tgsynth-v{GENERATOR_VERSION}:{seed}:{split}")


def _write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_json(path: pathlib.Path, obj: Any, *, indent: int | None = None) -> None:
    """Deterministic UTF-8 JSON (key order as built, trailing newline)."""
    _write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=indent) + "\n").encode("utf-8"))


def _write_jsonl(path: pathlib.Path, rows: Iterable[dict[str, Any]]) -> None:
    """Deterministic JSON lines."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    _write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _scene_record(scene: Scene) -> list[dict[str, str] | None]:
    """The scene's cells as JSON (``None`` = empty), row-major."""
    return [None if c is None else {"colour": c.colour, "shape": c.shape} for c in scene.cells]


# ---------------------------------------------------------------------------------------------
# Held-out test sets
# ---------------------------------------------------------------------------------------------


def make_test_items(kind: str, n: int, *, seed: int, grid: int, image_size: int) -> list[TestItem]:
    """``n`` questions of one kind, one scene each; categories cycle, Y/N answers are balanced.

    Scenes of located questions have at least two shapes, so "which cell" matters for the answer.
    """
    rng = _stream(seed, f"test-{kind}")
    categories = KIND_CATEGORIES[kind]
    items = []
    for index in range(n):
        category = categories[index % len(categories)]
        min_shapes, max_shapes = _shape_range(category, located_min=2)
        scene = sample_scene(rng, grid=grid, min_shapes=min_shapes, max_shapes=max_shapes)
        # Alternates within each round of categories and from one round to the next: every
        # category and the whole set get as many Yes as No (up to one per unfinished round).
        want_yes = (index // len(categories) + index % len(categories)) % 2 == 0 if kind == "yorn" else None
        question = make_question(scene, rng, kind=kind, category=category, want_yes=want_yes)
        items.append(TestItem(index, scene, question, encode_png(render_scene(scene, image_size))))
    return items


def _vlmeval_rows(kind: str, items: list[TestItem]) -> list[dict[str, Any]]:
    """Rows of one VLMEvalKit TSV in VLMEvalKit's column layout (docs/vlmevalkit.md).

    MCQ: ``index, image, question, A, B, C, D, answer, category``; Y/N and VQA: ``index, image,
    question, answer, category`` (VQA answers as a list literal of identical references).
    """
    rows = []
    for item in items:
        q = item.question
        row: dict[str, Any] = {
            "index": item.index,
            "image": base64.b64encode(item.png).decode("ascii"),
            "question": q.question,
        }
        if kind == "mcq":
            row.update(zip(OPTION_LETTERS, q.options))
            row["answer"] = q.answer
        elif kind == "vqa":
            row["answer"] = repr([q.answer] * VQA_REFERENCE_COPIES)
        else:
            row["answer"] = q.answer
        row["category"] = q.category
        rows.append(row)
    return rows


def _write_tsv(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    """A tab-separated file read back by VLMEvalKit's ``load`` (pandas ``read_csv(sep="\\t")``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pandas.DataFrame(rows).to_csv(path, sep="\t", index=False, lineterminator="\n")


def _lmms_doc(item: TestItem, image_path: str) -> dict[str, Any]:
    """One lmms-eval document (fields documented in :mod:`.lmms_utils`)."""
    q = item.question
    doc: dict[str, Any] = {
        "id": item.index,
        "kind": q.kind,
        "category": q.category,
        "image_path": image_path,
        "question": q.question,
        "options": list(q.options),
        "answer": q.answer,
        "answer_text": q.answer_text,
    }
    if q.kind == "mcq":
        # Loglikelihood task: the option texts are the continuations, the label their index.
        doc["choices"] = list(q.options)
        doc["label"] = OPTION_LETTERS.index(q.answer)
    return doc


def _lmms_yaml(task: str, tag: str, kind: str, *, loglikelihood: bool) -> str:
    """Task YAML text for lmms-eval 0.7.3 (docs/lmms_eval.md).

    ``!function`` tags are written literally (they are lmms-eval's YAML extension). Relative
    ``data_files`` are resolved against the YAML folder by lmms-eval >= 0.7.3.
    """
    head = [
        f"task: {task}",
        f"tag: {tag}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        "    test: data/test.jsonl",
        "test_split: test",
        "doc_to_visual: !function utils.doc_to_visual",
    ]
    if loglikelihood:
        body = [
            "output_type: multiple_choice",
            "doc_to_text: !function utils.doc_to_text_choice",
            "doc_to_choice: choices",
            "doc_to_target: label",
            # The continuation follows the assistant prompt directly (no leading space).
            'target_delimiter: ""',
            "lmms_eval_specific_kwargs:",
            "  default:",
            '    pre_prompt: ""',
            f'    post_prompt: "\\n{SHORT_ANSWER_SUFFIX}"',
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
        ]
    else:
        post = {
            "mcq": "\\nAnswer with the option's letter from the given choices directly.",
            "yorn": "",  # the question already ends with "Please answer yes or no."
            "vqa": f"\\n{SHORT_ANSWER_SUFFIX}",
        }[kind]
        body = [
            "output_type: generate_until",
            "doc_to_text: !function utils.doc_to_text",
            "doc_to_target: answer",
            "generation_kwargs:",
            f"  max_new_tokens: {LMMS_MAX_NEW_TOKENS}",
            "  temperature: 0",
            "  do_sample: false",
            '  until: ["\\n"]',
            "lmms_eval_specific_kwargs:",
            "  default:",
            '    pre_prompt: ""',
            f'    post_prompt: "{post}"',
            "process_results: !function utils.process_results",
            "metric_list:",
            "  - metric: accuracy",
            "    aggregation: mean",
            "    higher_is_better: true",
        ]
    return "\n".join(head + body + ["metadata:", f"  version: {GENERATOR_VERSION}.0", ""])


def _write_lmms_task(folder: pathlib.Path, task: str, tag: str, kind: str, items: list[TestItem], *,
                     loglikelihood: bool) -> None:
    """One lmms-eval task folder: YAML, hooks (``utils.py``), ``data/test.jsonl``, PNGs."""
    docs = []
    for item in items:
        image_path = f"data/images/{item.index:05d}.png"
        _write_bytes(folder / image_path, item.png)
        docs.append(_lmms_doc(item, image_path))
    _write_jsonl(folder / "data" / "test.jsonl", docs)
    hooks = pathlib.Path(lmms_utils.__file__).read_bytes()
    _write_bytes(folder / "utils.py", hooks)
    _write_bytes(folder / f"{task}.yaml", _lmms_yaml(task, tag, kind, loglikelihood=loglikelihood).encode())


# ---------------------------------------------------------------------------------------------
# Training sets
# ---------------------------------------------------------------------------------------------


def _train_scene(rng: random.Random, *, grid: int, held_out: set, split: str, min_shapes: int = 1,
                 max_shapes: int | None = None) -> Scene:
    """A training scene whose layout is not one of the held-out test layouts.

    Raises:
        RuntimeError: if :data:`MAX_SCENE_REDRAWS` draws all collide (grid far too small).
    """
    for _ in range(MAX_SCENE_REDRAWS):
        scene = sample_scene(rng, grid=grid, min_shapes=min_shapes, max_shapes=max_shapes)
        if scene.signature() not in held_out:
            return scene
    raise RuntimeError(f"{split}: could not draw a scene outside the test layouts in {MAX_SCENE_REDRAWS} tries")


def _pick_category(rng: random.Random, scene: Scene | None = None, kind: str | None = None) -> tuple[str, str]:
    """A uniform kind (unless given), then a uniform category of it (one the scene can answer, when given)."""
    if kind is None:
        kind = rng.choice(sorted(KIND_CATEGORIES))
    categories = KIND_CATEGORIES[kind]
    if scene is not None and len(scene.occupied()) != 1:
        categories = tuple(c for c in categories if c not in SINGLE_SHAPE_CATEGORIES)
    return kind, rng.choice(categories)


def _stage2_turns(scene: Scene, rng: random.Random, n_turns: int, first: tuple[str, str]) -> list[dict[str, str]]:
    """``n_turns`` question/answer pairs about one scene; the image marker opens the first turn.

    ``first`` is the first turn's ``(kind, category)`` (the scene was drawn for it); follow-ups
    draw categories the scene can answer.
    """
    turns = []
    for turn in range(n_turns):
        kind, category = first if turn == 0 else _pick_category(rng, scene)
        question = make_question(scene, rng, kind=kind, category=category)
        text = instruction_text(question)
        turns.append({"from": "human", "value": f"<image>\n{text}" if turn == 0 else text})
        turns.append({"from": "gpt", "value": question.answer})
    return turns


def _text_only_turns(rng: random.Random) -> list[dict[str, str]]:
    """One text-only exchange from :data:`TEXT_ONLY_QA` (short-answer suffix unless yes/no)."""
    question, answer = rng.choice(TEXT_ONLY_QA)
    if not question.endswith(YORN_SUFFIX):
        question = f"{question}\n{SHORT_ANSWER_SUFFIX}"
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def draw_caption_row(rng: random.Random, *, grid: int, held_out: set) -> tuple[Scene, list[dict[str, str]]]:
    """One stage-1 row: a scene outside ``held_out`` and its ``<image>`` + caption-request turn
    answered by the caption (LLaVA JSON turns; the image is rendered by the caller)."""
    scene = _train_scene(rng, grid=grid, held_out=held_out, split="stage1")
    instruction = rng.choice(CAPTION_INSTRUCTIONS)
    return scene, [{"from": "human", "value": f"<image>\n{instruction}"}, {"from": "gpt", "value": scene.caption()}]


def draw_instruction_row(rng: random.Random, *, grid: int, held_out: set, multi_turn_fraction: float,
                         text_only_fraction: float, kind: str | None = None,
                         ) -> tuple[Scene | None, list[dict[str, str]]]:
    """One stage-2 row: ``(scene, turns)``, or ``(None, turns)`` for a text-only row.

    A uniform kind (``kind`` when given) and a uniform category of it open the row (the scene is
    drawn for it, outside ``held_out``); ``multi_turn_fraction`` of the image rows have 2–3
    question/answer pairs.
    """
    if rng.random() < text_only_fraction:
        return None, _text_only_turns(rng)
    first = _pick_category(rng, kind=kind)
    min_shapes, max_shapes = _shape_range(first[1], located_min=1)
    scene = _train_scene(rng, grid=grid, held_out=held_out, split="stage2", min_shapes=min_shapes,
                         max_shapes=max_shapes)
    n_turns = rng.randint(2, 3) if rng.random() < multi_turn_fraction else 1
    return scene, _stage2_turns(scene, rng, n_turns, first)


def with_scene_in_words(conversations: list[dict[str, str]], scene: Scene) -> list[dict[str, str]]:
    """A row's turns with its ``<image>`` marker replaced by the scene's caption: the same questions
    answerable from text alone (what a text-only LLM is pretrained or probed on)."""
    first = conversations[0]["value"].replace("<image>", scene.caption(), 1)
    return [{**conversations[0], "value": first}, *conversations[1:]]


def held_out_signatures(*, seed: int, n_test: int, grid: int, image_size: int) -> set:
    """Layouts of the held-out test scenes of ``generate_synthetic_dataset`` with these arguments
    (what its training rows, and anything else trained for it, must not contain)."""
    return _signatures({kind: make_test_items(kind, n_test, seed=seed, grid=grid, image_size=image_size)
                        for kind in sorted(KIND_CATEGORIES)})


def _signatures(tests: dict[str, list[TestItem]]) -> set:
    """Scene layouts of every test item."""
    return {item.scene.signature() for items in tests.values() for item in items}


# ---------------------------------------------------------------------------------------------
# Card
# ---------------------------------------------------------------------------------------------


def _chance_levels(kind: str, items: list[TestItem], grid: int) -> dict[str, float]:
    """Chance accuracies of one test set.

    Returns:
        ``uniform``: expected accuracy of a uniform guess over each item's answer space
        (4 letters, yes/no, or the category's vocabulary); ``majority``: accuracy of the best
        constant answer on this set; ``question_prior``: accuracy of the best answer *per
        category* — what a model that reads the question but not the image can reach at most
        (it tells colour questions from counts), the bar a trained model has to clear.
    """
    # Answer-space sizes: a row or column holds 0..grid shapes, the whole image 1..grid² shapes.
    vocabulary = {"colour_at": len(COLOURS), "shape_at": len(SHAPES), "count_in_region": grid + 1,
                  "colour_single": len(COLOURS), "shape_single": len(SHAPES), "count_all": grid * grid}
    if kind == "mcq":
        uniform = 1.0 / len(OPTION_LETTERS)
    elif kind == "yorn":
        uniform = 0.5
    else:
        uniform = sum(1.0 / vocabulary[item.question.category] for item in items) / len(items)
    counts = collections.Counter(item.question.answer for item in items)
    by_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for item in items:
        by_category[item.question.category][item.question.answer] += 1
    prior = sum(max(answers.values()) for answers in by_category.values()) / len(items)
    return {"uniform": round(uniform, 4), "majority": round(max(counts.values()) / len(items), 4),
            "question_prior": round(prior, 4)}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def generate_synthetic_dataset(
    out_dir: str | pathlib.Path,
    *,
    seed: int = 0,
    n_train_stage1: int = 1000,
    n_train_stage2: int = 1000,
    n_test: int = 60,
    image_size: int = 64,
    grid: int = 2,
    multi_turn_fraction: float = MULTI_TURN_FRACTION,
    text_only_fraction: float = TEXT_ONLY_FRACTION,
    name_prefix: str = "tgsynth",
    overwrite: bool = False,
) -> SyntheticDataset:
    """Write the synthetic dataset (training JSON, images, both toolkits' test sets, card).

    Args:
        out_dir: output folder (created; must be empty or absent unless ``overwrite``).
        seed: the seed; same arguments -> byte-identical files.
        n_train_stage1: stage-1 caption rows (one image each).
        n_train_stage2: stage-2 rows (image rows + text-only rows).
        n_test: held-out questions *per kind* (MCQ, Y/N, VQA), one image each.
        image_size: side of the square images in pixels (the tiny models use small images).
        grid: 2 (2×2 cells) or 3 (3×3 cells).
        multi_turn_fraction: share of stage-2 image rows with 2–3 question/answer pairs.
        text_only_fraction: share of stage-2 rows without an image.
        name_prefix: prefix of the VLMEvalKit dataset and lmms-eval task names (lower case,
            letters/digits/underscores; must not contain VLMEvalKit's trigger substrings).
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        A :class:`SyntheticDataset` with every path and the card.

    Raises:
        ValueError: for a bad size, fraction, prefix or a non-empty ``out_dir`` (named).
    """
    check_geometry(image_size, grid)
    for name, value in (("n_train_stage1", n_train_stage1), ("n_train_stage2", n_train_stage2)):
        if value < 0:
            raise ValueError(f"{name}={value} must be >= 0")
    if n_test < 1:
        raise ValueError(f"n_test={n_test} must be >= 1")
    for name, value in (("multi_turn_fraction", multi_turn_fraction), ("text_only_fraction", text_only_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} must be in [0, 1]")
    if not name_prefix or not all(c.islower() or c.isdigit() or c == "_" for c in name_prefix):
        raise ValueError(f"name_prefix={name_prefix!r}: use lower-case letters, digits and underscores")
    root = pathlib.Path(out_dir).resolve()
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise ValueError(f"out_dir {root} is not empty; pass overwrite=True to replace it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)

    # Held-out test sets first: their layouts are then excluded from training.
    tests = {
        kind: make_test_items(kind, n_test, seed=seed, grid=grid, image_size=image_size)
        for kind in sorted(KIND_CATEGORIES)
    }
    held_out = _signatures(tests)

    image_dir = root / "images"
    # Stage 1: one caption per image.
    rng = _stream(seed, "stage1")
    stage1 = []
    for n in range(n_train_stage1):
        scene, conversations = draw_caption_row(rng, grid=grid, held_out=held_out)
        image = f"stage1/{n:06d}.png"
        _write_bytes(image_dir / image, encode_png(render_scene(scene, image_size)))
        stage1.append({"id": f"stage1-{n:06d}", "image": image, "conversations": conversations})
    stage1_json = root / "stage1_captions.json"
    _write_json(stage1_json, stage1)

    # Stage 2: single/multi-turn questions about an image, and text-only rows.
    rng = _stream(seed, "stage2")
    stage2 = []
    n_text_only = n_multi_turn = 0
    for n in range(n_train_stage2):
        scene, conversations = draw_instruction_row(rng, grid=grid, held_out=held_out,
                                                    multi_turn_fraction=multi_turn_fraction,
                                                    text_only_fraction=text_only_fraction)
        if scene is None:
            stage2.append({"id": f"stage2-{n:06d}", "conversations": conversations})
            n_text_only += 1
            continue
        image = f"stage2/{n:06d}.png"
        _write_bytes(image_dir / image, encode_png(render_scene(scene, image_size)))
        n_multi_turn += len(conversations) > 2
        stage2.append({"id": f"stage2-{n:06d}", "image": image, "conversations": conversations})
    stage2_json = root / "stage2_instructions.json"
    _write_json(stage2_json, stage2)

    # Test sets: ground truth, VLMEvalKit TSVs, lmms-eval task folders.
    ground_truth = root / "test_ground_truth.jsonl"
    _write_jsonl(ground_truth, [
        {"kind": kind, "index": item.index, **dataclasses.asdict(item.question),
         "scene": _scene_record(item.scene)}
        for kind, items in tests.items() for item in items
    ])
    lmudata = root / "vlmeval"
    vlmeval_names = {kind: f"{name_prefix}_{VLMEVAL_NAME_SUFFIX[kind]}" for kind in tests}
    for kind, items in tests.items():
        _write_tsv(lmudata / f"{vlmeval_names[kind]}.tsv", _vlmeval_rows(kind, items))
    vlmeval_config = root / "vlmeval_data_config.json"
    _write_json(vlmeval_config, {"data": {
        vlmeval_names[kind]: {"class": VLMEVAL_CLASSES[kind], "dataset": vlmeval_names[kind]} for kind in tests
    }}, indent=2)

    include_path = root / "lmms_eval_tasks"
    lmms_tasks = {kind: f"{name_prefix}_{kind}" for kind in tests}
    lmms_tasks["mcq_ll"] = f"{name_prefix}_mcq_ll"
    for kind, task in lmms_tasks.items():
        base_kind = "mcq" if kind == "mcq_ll" else kind
        _write_lmms_task(include_path / task, task, name_prefix, base_kind, tests[base_kind],
                         loglikelihood=kind == "mcq_ll")

    card = {
        "name": name_prefix,
        "generator": __name__,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "grid": grid,
        "colours": sorted(COLOURS),
        "shapes": list(SHAPES),
        "counts": {
            "stage1": len(stage1),
            "stage2": len(stage2),
            "stage2_text_only": n_text_only,
            "stage2_multi_turn": n_multi_turn,
            "test": {kind: len(items) for kind, items in tests.items()},
            "test_categories": {
                kind: dict(sorted(collections.Counter(i.question.category for i in items).items()))
                for kind, items in tests.items()
            },
        },
        "chance_level": {kind: _chance_levels(kind, items, grid) for kind, items in tests.items()},
        "files": {
            "stage1": stage1_json.name,
            "stage2": stage2_json.name,
            "images": image_dir.name,
            "test_ground_truth": ground_truth.name,
            "vlmeval_lmudata": lmudata.name,
            "vlmeval_config": vlmeval_config.name,
            "lmms_eval_include_path": include_path.name,
        },
        "vlmeval": {
            "datasets": {kind: {"name": name, "class": VLMEVAL_CLASSES[kind]} for kind, name in vlmeval_names.items()},
            "judge": "exact_matching",
        },
        "lmms_eval": {"tag": name_prefix, "tasks": lmms_tasks},
    }
    card_path = root / "dataset_card.json"
    _write_json(card_path, card, indent=2)
    logger.info(
        "synthetic dataset in %s: %d stage-1 rows, %d stage-2 rows (%d text-only, %d multi-turn), "
        "%d test questions per kind", root, len(stage1), len(stage2), n_text_only, n_multi_turn, n_test,
    )
    return SyntheticDataset(
        root=root,
        stage1_json=stage1_json,
        stage2_json=stage2_json,
        image_dir=image_dir,
        lmudata_dir=lmudata,
        vlmeval_datasets=vlmeval_names,
        vlmeval_config=vlmeval_config,
        lmms_include_path=include_path,
        lmms_tasks=lmms_tasks,
        lmms_tag=name_prefix,
        ground_truth=ground_truth,
        card_path=card_path,
        card=card,
    )
