"""lmms-eval task hooks of the synthetic test sets (copied as ``utils.py`` into each task folder).

lmms-eval resolves ``!function utils.doc_to_text`` in a task YAML by importing the ``utils.py``
*next to the YAML* by file location, so each generated task folder needs its own copy of these
hooks. :func:`tg_llava_eval.demo.synthetic.dataset.generate_synthetic_dataset` copies this file's
source there verbatim; it therefore imports nothing from tg-llava-eval (only the standard library
and PIL, which lmms-eval already needs), so a task folder keeps working when moved elsewhere.

Documents (one JSON line each, see ``data/test.jsonl``) carry: ``id``, ``kind`` (``mcq``,
``yorn``, ``vqa``), ``category``, ``image_path`` (relative to the task folder), ``question``,
``options`` (list, MCQ only), ``answer`` (letter / ``Yes``/``No`` / short answer),
``answer_text``, and for the loglikelihood task ``choices`` + ``label``.

Scoring mirrors the exact-matching judges of the toolkits: MCQ reads the first option letter
(or an option text) in the reply, Y/N the first yes/no word, VQA a normalised exact match.
"""

from __future__ import annotations

import os
import re
import string

from PIL import Image

#: Folder of this file = the task folder (image paths in the documents are relative to it).
TASK_DIR = os.path.dirname(os.path.abspath(__file__))

OPTION_LETTERS = ("A", "B", "C", "D")
ARTICLES = {"a", "an", "the"}


def doc_to_visual(doc):
    """The document's image as a one-element list of RGB ``PIL.Image`` (lmms-eval convention)."""
    with Image.open(os.path.join(TASK_DIR, doc["image_path"])) as image:
        return [image.convert("RGB")]


def _with_prompts(text, lmms_eval_specific_kwargs):
    """Wrap ``text`` in the YAML's ``pre_prompt`` / ``post_prompt`` (both optional)."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{text}{kwargs.get('post_prompt', '')}"


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The user message of a generation task: the question, plus ``"A. circle"`` lines for MCQ."""
    text = doc["question"]
    if doc["kind"] == "mcq":
        text += "".join(f"\n{letter}. {option}" for letter, option in zip(OPTION_LETTERS, doc["options"]))
    return _with_prompts(text, lmms_eval_specific_kwargs)


def doc_to_text_choice(doc, lmms_eval_specific_kwargs=None):
    """The context of the loglikelihood task: the bare question (choices are continuations)."""
    return _with_prompts(doc["question"], lmms_eval_specific_kwargs)


def normalise_answer(text):
    """Lower-case, drop punctuation and articles, collapse spaces: ``"The Red."`` -> ``"red"``."""
    text = str(text).lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(word for word in text.split() if word not in ARTICLES)


def extract_option_letter(prediction, options):
    """The option letter a reply chooses, or ``None``.

    Accepts a bare letter ("B", "B.", "(B)", "B. star") or, failing that, a reply equal to one
    option's text ("star").
    """
    match = re.match(r"^\s*\(?([A-D])\b", str(prediction))
    if match:
        return match.group(1)
    normalised = normalise_answer(prediction)
    for letter, option in zip(OPTION_LETTERS, options):
        if normalised == normalise_answer(option):
            return letter
    return None


def extract_yes_no(prediction):
    """``"Yes"``, ``"No"`` or ``None`` from the first word of a reply."""
    words = normalise_answer(prediction).split()
    if words and words[0] in ("yes", "no"):
        return words[0].capitalize()
    return None


def process_results(doc, results):
    """Score one generation: ``{"accuracy": 1.0 | 0.0}`` (pure; lmms-eval runs it in threads).

    Args:
        doc: the document.
        results: one-element list with the model's reply.
    """
    prediction = results[0] if results else ""
    if doc["kind"] == "mcq":
        correct = extract_option_letter(prediction, doc["options"]) == doc["answer"]
    elif doc["kind"] == "yorn":
        correct = extract_yes_no(prediction) == doc["answer"]
    else:
        correct = normalise_answer(prediction) == normalise_answer(doc["answer"])
    return {"accuracy": float(correct)}
