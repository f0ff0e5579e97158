"""Task functions of the local lmms-eval tasks used to test the TG-LLaVA wrapper offline.

lmms-eval imports this file by location (``!function utils.<name>`` in the YAML files next to
it), so image paths are resolved against this folder. The tasks mirror the shapes of real
lmms-eval tasks: PIL images from ``doc_to_visual`` (gen, mc, multi-round), a pre/post prompt,
a custom ``process_results`` metric with a mean aggregation. The bad-document task returns image
*paths* so that the engine itself meets the missing and corrupt files, except for one document
that the task opens itself and fails on (the wrapper must survive a raising ``doc_to_visual``).
"""

from __future__ import annotations

import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def _image_path(doc):
    return os.path.join(HERE, doc["image"])


def doc_to_visual(doc):
    """The document's picture as an RGB PIL image (what real lmms-eval tasks return)."""
    return [Image.open(_image_path(doc)).convert("RGB")]


def doc_to_visual_path(doc):
    """The picture's path, or the opened image when the document says the task opens it."""
    if doc["open_in_task"]:
        return [Image.open(_image_path(doc)).convert("RGB")]
    return [_image_path(doc)]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """Question with the task's pre/post prompt."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def doc_to_text_bare(doc, lmms_eval_specific_kwargs=None):
    """The question alone (an empty question stays empty)."""
    return doc["question"]


def doc_to_text_mc(doc, lmms_eval_specific_kwargs=None):
    """Question, lettered options and the task's post prompt."""
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(f"{letter}. {option}" for letter, option in zip("ABCD", doc["options"]))
    return f"{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def process_results(doc, results):
    """Exact match of the stripped, lower-cased answer."""
    prediction = results[0].strip().lower()
    return {"exact_match": float(prediction == doc["answer"])}


def process_results_bad(doc, results):
    """Whether the response records a failure (the wrapper's error prefix)."""
    return {"failed": float(results[0].startswith("[tg_llava error]"))}


def doc_to_text_multiround(doc, lmms_eval_specific_kwargs=None, previous_output=None, round_idx=None, previous_round_info=None):
    """Two rounds: the question, then a follow-up quoting the first answer; then stop.

    lmms-eval's protocol: ``round_idx is None`` -> the first context; later rounds return
    ``(visuals, context, terminal, round_results, info)``.
    """
    if round_idx is None:
        return doc["question"]
    if round_idx == 1:
        context = f"{doc['question']}\nYou said: {previous_output[-1]!r}. {doc['follow_up']}"
        return doc_to_visual(doc), context, False, None, {"first_answer": previous_output[-1]}
    return None, None, True, list(previous_output), previous_round_info


def process_results_multiround(doc, results):
    """Number of rounds answered (2 when the protocol ran to the end)."""
    return {"rounds": float(len(results[0]))}
