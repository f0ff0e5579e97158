"""Questions about synthetic scenes, with their ground-truth answers.

Two families of categories. *Located* questions name a place in the image (a cell such as "the
top-left", or a whole row or column such as "on the right"), so the answer depends on what is
drawn there — the situation TG-LLaVA's text guidance targets. *Whole-image* questions need no
place: they are asked of a scene with a single shape ("the shape") or about all shapes (a count),
so they need the image read but no place found, and tell "the model reads the image" apart from
"the model finds the named place". Every answer is computed from the :class:`Scene`.

=====================  ===========================================  ==========================
category               example                                      answer
=====================  ===========================================  ==========================
``colour_at``          What colour is the shape in the top-left?    ``red``
``shape_at``           Which shape is in the bottom-right?          ``star``
``count_in_region``    How many shapes are on the left?             ``2``
``exists_in_region``   Is there a red circle on the right?          ``Yes`` / ``No``
``colour_single``      What colour is the shape? (one shape)        ``red``
``shape_single``       Which shape is in the image? (one shape)     ``star``
``count_all``          How many shapes are in the image?            ``3``
=====================  ===========================================  ==========================

The question *kinds* follow the evaluation toolkits' types: ``mcq`` (four lettered options,
answer a letter), ``yorn`` (answer ``Yes``/``No``) and ``vqa`` (short answer).

Choices that make the located questions need the location (so text guidance has something to do):

* ``colour_at``/``shape_at`` prefer cells whose attribute differs from another shape's in the
  same image, so "the colour of some shape" is not enough;
* half of the ``No`` answers of ``exists_in_region`` are *hard negatives*: the object is in the
  image, just not in the named region.

The prompts used for training (:func:`instruction_text`) follow LLaVA-1.5's answer-format
suffixes ("Answer with the option's letter from the given choices directly.", "Answer the
question using a single word or phrase.") so that a model trained here answers in the format the
toolkits' exact-matching judges read.
"""

from __future__ import annotations

import dataclasses
import random

from tg_llava_eval.demo.synthetic.scenes import COLOURS, SHAPES, Region, Scene, shapes_in, with_article

#: Option letters of multiple-choice questions (four options, as in MMBench).
OPTION_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")

#: The question kinds (= evaluation types) and the categories each kind draws from, in order.
KIND_CATEGORIES: dict[str, tuple[str, ...]] = {
    "mcq": ("shape_at", "colour_at", "count_in_region", "colour_single", "shape_single", "count_all"),
    "yorn": ("exists_in_region", "colour_at", "shape_at", "colour_single", "shape_single"),
    "vqa": ("colour_at", "shape_at", "count_in_region", "colour_single", "shape_single", "count_all"),
}
#: Categories asked only of scenes with exactly one shape ("the shape").
SINGLE_SHAPE_CATEGORIES: frozenset[str] = frozenset({"colour_single", "shape_single"})
#: Categories whose answer is a colour (the other attribute categories ask for a shape).
COLOUR_CATEGORIES: frozenset[str] = frozenset({"colour_at", "colour_single"})

#: LLaVA-1.5 answer-format suffixes (the training prompts).
MCQ_SUFFIX = "Answer with the option's letter from the given choices directly."
SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."
#: Y/N questions carry their own instruction (POPE/MME style), because VLMEvalKit's Y/N datasets
#: send the raw question to the model.
YORN_SUFFIX = "Please answer yes or no."


@dataclasses.dataclass(frozen=True)
class Question:
    """One question about one scene, with its answer.

    Attributes:
        kind: ``"mcq"``, ``"yorn"`` or ``"vqa"``.
        category: one of the categories of the module docstring.
        question: the question text; for ``yorn`` it ends with :data:`YORN_SUFFIX`; for ``mcq``
            it does not contain the options.
        options: the option texts for ``mcq`` (``len == 4``, in letter order); empty otherwise.
        answer: the letter (``mcq``), ``"Yes"``/``"No"`` (``yorn``) or the short answer (``vqa``).
        answer_text: the answer in words (the option text for ``mcq``; else = ``answer``).
    """

    kind: str
    category: str
    question: str
    options: tuple[str, ...]
    answer: str
    answer_text: str


def _attribute(scene: Scene, index: int, category: str) -> str:
    """The colour or shape name of the shape in cell ``index``."""
    shape = scene.cells[index]
    return shape.colour if category in COLOUR_CATEGORIES else shape.shape


def _vocabulary(category: str) -> list[str]:
    """The possible answers of a colour or shape category."""
    return sorted(COLOURS) if category in COLOUR_CATEGORIES else list(SHAPES)


def _pick_located_cell(scene: Scene, rng: random.Random, category: str) -> int:
    """An occupied cell, preferring one whose attribute differs from some other shape's.

    Preferring such cells makes the answer depend on the location named by the question.
    """
    occupied = scene.occupied()
    distinctive = [
        i
        for i in occupied
        if any(_attribute(scene, j, category) != _attribute(scene, i, category) for j in occupied)
    ]
    return rng.choice(distinctive or occupied)


def _attribute_question(scene: Scene, rng: random.Random, category: str) -> tuple[str, str, list[str]]:
    """Text, answer and vocabulary of a ``colour_at`` / ``shape_at`` question."""
    index = _pick_located_cell(scene, rng, category)
    place = scene.cell_name(index)
    if category == "colour_at":
        text = rng.choice(
            (f"What colour is the shape in the {place}?", f"What is the colour of the shape in the {place}?")
        )
    else:
        text = rng.choice((f"Which shape is in the {place}?", f"What shape is in the {place}?"))
    return text, _attribute(scene, index, category), _vocabulary(category)


def _single_question(scene: Scene, rng: random.Random, category: str) -> tuple[str, str, list[str]]:
    """Text, answer and vocabulary of a ``colour_single`` / ``shape_single`` question."""
    answer = _attribute(scene, scene.occupied()[0], category)
    if category == "colour_single":
        text = rng.choice(("What colour is the shape?", "What is the colour of the shape?"))
    else:
        text = rng.choice(("Which shape is in the image?", "What shape is in the image?"))
    return text, answer, _vocabulary(category)


def _count_question(scene: Scene, rng: random.Random, category: str) -> tuple[str, str, list[str]]:
    """Text, answer and vocabulary of a count question (digits 0..number of cells counted).

    ``count_in_region`` counts one row or column, ``count_all`` the whole image.
    """
    if category == "count_all":
        cells, text = tuple(range(len(scene.cells))), "How many shapes are in the image?"
    else:
        region: Region = rng.choice(scene.line_regions())
        cells, text = region.cells, f"How many shapes are {region.phrase}?"
    count = len(shapes_in(scene, cells))
    vocabulary = [str(n) for n in range(max(len(cells), len(OPTION_LETTERS) - 1) + 1)]
    return text, str(count), vocabulary


def _exists_question(scene: Scene, rng: random.Random, want_yes: bool) -> tuple[str, str]:
    """Text and answer of an ``exists_in_region`` question with the requested answer.

    A ``No`` is a hard negative (object present elsewhere in the image) whenever the scene
    allows one and a coin flip says so; otherwise an object absent from the region.
    """
    regions = scene.line_regions()
    if want_yes:
        region = rng.choice([r for r in regions if shapes_in(scene, r.cells)])
        label = rng.choice(shapes_in(scene, region.cells)).label
        return f"Is there {with_article(label)} {region.phrase}? {YORN_SUFFIX}", "Yes"
    all_labels = [f"{c} {s}" for c in sorted(COLOURS) for s in SHAPES]
    region = rng.choice(regions)
    inside = {shape.label for shape in shapes_in(scene, region.cells)}
    elsewhere = sorted(
        {scene.cells[i].label for i in scene.occupied() if i not in region.cells} - inside
    )
    if elsewhere and rng.random() < 0.5:
        label = rng.choice(elsewhere)
    else:
        label = rng.choice([x for x in all_labels if x not in inside])
    return f"Is there {with_article(label)} {region.phrase}? {YORN_SUFFIX}", "No"


def _attribute_yorn(scene: Scene, rng: random.Random, category: str, want_yes: bool) -> tuple[str, str]:
    """``Is the shape in the top-left red?`` / ``Is the shape a circle?`` with the requested answer.

    Located categories name a cell; ``*_single`` categories ask about the scene's one shape.
    """
    single = category in SINGLE_SHAPE_CATEGORIES
    index = scene.occupied()[0] if single else _pick_located_cell(scene, rng, category)
    truth = _attribute(scene, index, category)
    if want_yes:
        value = truth
    else:
        # Prefer a value present elsewhere in the image (hard negative), else any other value.
        others = sorted({_attribute(scene, j, category) for j in scene.occupied()} - {truth})
        value = rng.choice(others or [v for v in _vocabulary(category) if v != truth])
    subject = "the shape" if single else f"the shape in the {scene.cell_name(index)}"
    text = f"Is {subject} {value}?" if category in COLOUR_CATEGORIES else (
        f"Is {subject} {with_article(value)}?"
    )
    return f"{text} {YORN_SUFFIX}", "Yes" if want_yes else "No"


def as_mcq(rng: random.Random, answer: str, vocabulary: list[str]) -> tuple[tuple[str, ...], str]:
    """Four options (the answer + three distractors from ``vocabulary``) and the answer letter."""
    distractors = rng.sample([v for v in vocabulary if v != answer], len(OPTION_LETTERS) - 1)
    options = distractors + [answer]
    rng.shuffle(options)
    return tuple(options), OPTION_LETTERS[options.index(answer)]


def make_question(
    scene: Scene,
    rng: random.Random,
    *,
    kind: str,
    category: str,
    want_yes: bool | None = None,
) -> Question:
    """Ask one question of ``kind`` and ``category`` about ``scene``.

    Args:
        scene: the scene (at least one shape; exactly one for :data:`SINGLE_SHAPE_CATEGORIES`).
        rng: randomness for the cell/region/option choices.
        kind: ``"mcq"``, ``"yorn"`` or ``"vqa"``.
        category: a category allowed for ``kind`` by :data:`KIND_CATEGORIES`.
        want_yes: for ``yorn`` the answer to produce (balanced sets); default a coin flip.

    Returns:
        The :class:`Question` with its ground-truth answer.

    Raises:
        ValueError: for an unknown kind, a category the kind does not offer, or a one-shape
            category asked of a scene with several shapes.
    """
    if kind not in KIND_CATEGORIES:
        raise ValueError(f"unknown question kind {kind!r}; known: {sorted(KIND_CATEGORIES)}")
    if category not in KIND_CATEGORIES[kind]:
        raise ValueError(f"kind {kind!r} has no category {category!r}; it has {KIND_CATEGORIES[kind]}")
    if category in SINGLE_SHAPE_CATEGORIES and len(scene.occupied()) != 1:
        raise ValueError(f"category {category!r} needs a scene with one shape, this one has {len(scene.occupied())}")
    if kind == "yorn":
        want_yes = rng.random() < 0.5 if want_yes is None else want_yes
        if category == "exists_in_region":
            text, answer = _exists_question(scene, rng, want_yes)
        else:
            text, answer = _attribute_yorn(scene, rng, category, want_yes)
        return Question(kind, category, text, (), answer, answer)
    if category in ("count_in_region", "count_all"):
        text, answer_text, vocabulary = _count_question(scene, rng, category)
    elif category in SINGLE_SHAPE_CATEGORIES:
        text, answer_text, vocabulary = _single_question(scene, rng, category)
    else:
        text, answer_text, vocabulary = _attribute_question(scene, rng, category)
    if kind == "vqa":
        return Question(kind, category, text, (), answer_text, answer_text)
    options, letter = as_mcq(rng, answer_text, vocabulary)
    return Question(kind, category, text, options, letter, answer_text)


def instruction_text(question: Question) -> str:
    """The user message a model is trained on for ``question`` (LLaVA-1.5 answer formats).

    Returns:
        ``mcq``: question, one ``"A. circle"`` line per option, then :data:`MCQ_SUFFIX`;
        ``vqa``: question + newline + :data:`SHORT_ANSWER_SUFFIX`; ``yorn``: the question.
    """
    if question.kind == "mcq":
        lines = [question.question]
        lines += [f"{letter}. {text}" for letter, text in zip(OPTION_LETTERS, question.options)]
        return "\n".join(lines + [MCQ_SUFFIX])
    if question.kind == "vqa":
        return f"{question.question}\n{SHORT_ANSWER_SUFFIX}"
    return question.question


#: Text-only question/answer pairs (stage-2 rows without an image, as LLaVA's mix has): facts
#: about the dataset's vocabulary, answerable without looking at anything.
TEXT_ONLY_QA: tuple[tuple[str, str], ...] = (
    ("How many sides does a square have?", "4"),
    ("How many sides does a triangle have?", "3"),
    ("How many corners does a circle have?", "0"),
    ("How many points does a star usually have?", "5"),
    ("Which of these is a colour: circle, red or square?", "red"),
    ("Which of these is a shape: blue, star or orange?", "star"),
    ("Is a circle round? " + YORN_SUFFIX, "Yes"),
    ("Does a triangle have four sides? " + YORN_SUFFIX, "No"),
    ("What colour do you get by mixing red and yellow?", "orange"),
    ("What colour do you get by mixing blue and yellow?", "green"),
    ("What colour do you get by mixing red and blue?", "purple"),
    ("Is yellow a colour? " + YORN_SUFFIX, "Yes"),
)
