"""Deterministic tiny VLMEvalKit datasets (TSV files with base64 PNG images) for tests and the bench.

VLMEvalKit reads a custom dataset from ``$LMUData/<name>.tsv``; the names below avoid every
substring that changes VLMEvalKit's evaluation (``mmbench``, ``circular``, ``MME``, ``POPE``,
``GQA``, ``TextVQA``, ``openended``, ...; see ``reference/vlmevalkit.md`` §5). The files are
generated rather than committed because some rows hold absolute paths, and because a fresh
``LMUData`` per test is required anyway (VLMEvalKit keeps stale dumped images).

Tables:

* :func:`write_mcq` — MCQ rows (``A``..``D``, some with a ``hint``), several questions per image;
  repeated images are stored as a reference to the first row's index, like MMBench's circular TSVs.
  Found by ``--data NAME`` (``CustomMCQDataset``).
* :func:`write_yorn` / :func:`write_vqa` — Y/N and short-answer rows, used through ``--config``
  (``ImageYORNDataset`` / ``ImageVQADataset``).
* :func:`write_bad_rows` — MCQ rows with base64 images: good rows plus an undecodable image, an
  empty question, a 600-word question (valid for the LLM, far beyond the guide tower's 77 tokens)
  and a 5000-word question (beyond the LLM's context).
* :func:`write_bad_paths` — MCQ rows with an ``image_path`` column: good rows plus a missing file
  and a corrupt file.

Run as a script to write every table into a directory: ``python tiny_datasets.py OUT_DIR``.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

MCQ_NAME = "tg_tiny_mcq"
YORN_NAME = "tg_tiny_yorn"
VQA_NAME = "tg_tiny_vqa"
BAD_ROWS_NAME = "tg_tiny_bad_rows"
BAD_PATHS_NAME = "tg_tiny_bad_paths"

#: Distinct colours of the synthetic images (an image = background colour + a shape).
COLOURS = {
    "red": (200, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 210), "yellow": (230, 210, 40),
    "purple": (130, 50, 160), "orange": (240, 140, 20), "grey": (128, 128, 128), "cyan": (30, 200, 200),
}
SHAPES = ("square", "circle")
#: Non-square on purpose: the processor pads to square.
IMAGE_SIZE = (48, 40)
#: The "600-token question" repeats one word this many times (one LLM token each for the tiny
#: tokenizer); it fits the LLM's context but not the guide tower's 77 positions.
LONG_QUESTION_WORDS = 600
#: A question longer than any tiny or Vicuna/Llama-3 context (2048 / 4096 / 8192 tokens).
TOO_LONG_QUESTION_WORDS = 9000


def image_png(index: int) -> bytes:
    """PNG bytes of synthetic image ``index``: colour ``index % 8`` with shape ``index // 8 % 2``."""
    names = list(COLOURS)
    colour = COLOURS[names[index % len(names)]]
    shape = SHAPES[(index // len(names)) % len(SHAPES)]
    image = Image.new("RGB", IMAGE_SIZE, colour)
    draw = ImageDraw.Draw(image)
    box = (8, 8, IMAGE_SIZE[0] - 8, IMAGE_SIZE[1] - 8)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_b64(index: int) -> str:
    """Base64 text of :func:`image_png` (VLMEvalKit's ``image`` column)."""
    return base64.b64encode(image_png(index)).decode("ascii")


def colour_of(index: int) -> str:
    """Colour name of synthetic image ``index``."""
    return list(COLOURS)[index % len(COLOURS)]


def _write(root: Path, name: str, rows: list[dict]) -> Path:
    path = Path(root) / f"{name}.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def mcq_rows(n_images: int = 4, questions_per_image: int = 2, *, start_index: int = 0) -> list[dict]:
    """MCQ rows: per image, "What colour is the background?" with 2–4 options, every other row with a hint.

    The first question of an image carries the base64 PNG; the others reference it by index.
    """
    names = list(COLOURS)
    rows = []
    for image in range(n_images):
        first_index = None
        for question in range(questions_per_image):
            index = start_index + image * questions_per_image + question
            truth = colour_of(image)
            distractors = [c for c in names if c != truth]
            n_options = 2 + (index % 3)
            options = [truth] + distractors[question: question + n_options - 1]
            shift = index % n_options  # rotate so the answer letter varies
            options = options[shift:] + options[:shift]
            row = {
                "index": index,
                "image": image_b64(image) if first_index is None else str(first_index),
                "question": "What colour is the background?" if question % 2 == 0 else "Which colour fills most of the picture?",
                "hint": "The shape in the middle is white." if index % 2 == 0 else float("nan"),
                "answer": "ABCD"[options.index(truth)],
                "category": "colour",
                "l2-category": "perception",
                "split": "dev",
            }
            for letter, option in zip("ABCD", options):
                row[letter] = option
            rows.append(row)
            first_index = index if first_index is None else first_index
    return rows


def write_mcq(root: Path, name: str = MCQ_NAME, n_images: int = 4, questions_per_image: int = 2) -> Path:
    """Write :func:`mcq_rows` as ``<root>/<name>.tsv`` and return its path."""
    return _write(root, name, mcq_rows(n_images, questions_per_image))


def write_yorn(root: Path, name: str = YORN_NAME, n_images: int = 3) -> Path:
    """Y/N rows, two per image (one true, one false), MME/POPE style "Please answer yes or no." questions."""
    rows = []
    for image in range(n_images):
        other = colour_of(image + 1)
        for offset, (colour, answer) in enumerate(((colour_of(image), "Yes"), (other, "No"))):
            rows.append({
                "index": 2 * image + offset,
                "image": image_b64(image) if offset == 0 else str(2 * image),
                "question": f"Is the background {colour}? Please answer yes or no.",
                "answer": answer,
                "category": "colour",
            })
    return _write(root, name, rows)


def write_vqa(root: Path, name: str = VQA_NAME, n_images: int = 3) -> Path:
    """Short-answer rows, two per image."""
    rows = []
    for image in range(n_images):
        for offset, question in enumerate(("What colour is the background?", "What colour is the shape?")):
            rows.append({
                "index": 2 * image + offset,
                "image": image_b64(image) if offset == 0 else str(2 * image),
                "question": question,
                "answer": colour_of(image) if offset == 0 else "white",
                "category": "colour",
            })
    return _write(root, name, rows)


def long_question(words: int = LONG_QUESTION_WORDS) -> str:
    """A question of ``words`` repeated words."""
    return "Describe " + " ".join(["colour"] * words) + "?"


#: Indices of the rows :func:`write_bad_rows` / :func:`write_bad_paths` make bad, with the reason.
#: Row 4 of the bad-rows table (the 600-word question) is not bad for the LLM: it must be answered
#: with its guide cut to 77 CLIP tokens.
BAD_ROWS = {2: "undecodable image", 3: "empty question", 5: "question beyond the LLM context"}
LONG_ROW = 4
BAD_PATHS = {1: "missing image file", 2: "corrupt image file"}


def write_bad_rows(root: Path, name: str = BAD_ROWS_NAME) -> Path:
    """Seven MCQ rows with base64 images; see :data:`BAD_ROWS` and :data:`LONG_ROW`."""
    rows = mcq_rows(n_images=7, questions_per_image=1)
    not_png = base64.b64encode(b"this is not an image file, only text pretending to be a PNG" * 3).decode("ascii")
    rows[2]["image"] = not_png  # > 64 characters: VLMEvalKit treats it as image data, not a reference
    rows[3]["question"] = "   "
    rows[LONG_ROW]["question"] = long_question()
    rows[5]["question"] = long_question(TOO_LONG_QUESTION_WORDS)
    return _write(root, name, rows)


def write_bad_paths(root: Path, name: str = BAD_PATHS_NAME) -> Path:
    """Four MCQ rows whose images are files named by an absolute ``image_path``; rows 1–2 are bad."""
    folder = Path(root).resolve() / f"{name}_files"
    folder.mkdir(parents=True, exist_ok=True)
    rows = mcq_rows(n_images=4, questions_per_image=1)
    for row in rows:
        path = folder / f"img_{row['index']}.png"
        path.write_bytes(image_png(int(row["index"])))
        row.pop("image")
        row["image_path"] = str(path)
    rows[1]["image_path"] = str(folder / "does_not_exist.png")
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(image_png(2)[:40])  # a truncated PNG header
    rows[2]["image_path"] = str(corrupt)
    return _write(root, name, rows)


def write_config(path: Path, model_entries: dict, data_names: dict[str, str]) -> Path:
    """A VLMEvalKit ``--config`` JSON: ``model_entries`` as given, ``data_names`` = name -> dataset class."""
    data = {name: {"class": cls, "dataset": name} for name, cls in data_names.items()}
    Path(path).write_text(json.dumps({"model": model_entries, "data": data}, indent=2))
    return Path(path)


def write_all(root: Path) -> list[Path]:
    """Write every table into ``root`` (created)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return [write_mcq(root), write_yorn(root), write_vqa(root), write_bad_rows(root), write_bad_paths(root)]


if __name__ == "__main__":  # pragma: no cover - manual use
    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(written)
