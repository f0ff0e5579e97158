"""Regenerate the data files of the local lmms-eval tasks used by tests/integration/lmms_eval.

Run from anywhere: ``python tests/data/lmms_tasks/tg_llava_local/build_data.py``. The output is
deterministic (fixed colours, fixed texts) and committed, so the tests never run this script; it
documents where every file comes from.

Files written next to this script:

* ``images/*.png`` — small solid-colour images (the documents' pictures);
* ``images/corrupt.png`` — bytes that are not an image (a bad document);
* ``data/gen.jsonl`` — the generation task (question about the colour, short answer);
* ``data/mc.parquet`` — the multiple-choice task (image path, question, options, answer letter);
* ``data/bad.jsonl`` — bad documents: missing image, corrupt image, empty question, a question of
  about 600 words (longer than the CLIP text tower's 77 tokens: the guide must be cut, the
  document answered), an image the task itself fails to open, and one good document;
* ``data/multiround.jsonl`` — the two-round task.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image

HERE = Path(__file__).resolve().parent

#: name -> RGB; the images are 32 x 24 (not square: the processor pads them).
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
IMAGE_SIZE = (32, 24)
OPTIONS = ["red", "green", "blue", "yellow"]
LETTERS = "ABCD"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    (HERE / "data").mkdir(exist_ok=True)
    for name, rgb in COLOURS.items():
        Image.new("RGB", IMAGE_SIZE, rgb).save(HERE / "images" / f"{name}.png")
    (HERE / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG body")

    gen = []
    questions = ["What colour is the picture?", "Name the colour of this image.", "Which colour fills the image?"]
    for i, (name, question) in enumerate((n, q) for q in questions[:2] for n in COLOURS):
        gen.append({"id": i, "image": f"images/{name}.png", "question": question, "answer": name})
    write_jsonl(HERE / "data" / "gen.jsonl", gen)

    mc = []
    for i, name in enumerate(COLOURS):
        mc.append(
            {
                "id": i,
                "image": f"images/{name}.png",
                "question": "Which colour is shown?",
                "options": OPTIONS,
                "answer": LETTERS[OPTIONS.index(name)],
            }
        )
    pd.DataFrame(mc).to_parquet(HERE / "data" / "mc.parquet", index=False)

    long_question = " ".join(f"Detail {i} about the red picture is worth noting." for i in range(60))
    bad = [
        {"id": 0, "image": "images/red.png", "question": "What colour is the picture?", "open_in_task": False, "kind": "good"},
        {"id": 1, "image": "images/missing.png", "question": "What colour is the picture?", "open_in_task": False, "kind": "missing_image"},
        {"id": 2, "image": "images/corrupt.png", "question": "What colour is the picture?", "open_in_task": False, "kind": "corrupt_image"},
        {"id": 3, "image": "images/blue.png", "question": "", "open_in_task": False, "kind": "empty_question"},
        {"id": 4, "image": "images/green.png", "question": long_question, "open_in_task": False, "kind": "long_question"},
        {"id": 5, "image": "images/missing.png", "question": "What colour is the picture?", "open_in_task": True, "kind": "task_cannot_open"},
    ]
    write_jsonl(HERE / "data" / "bad.jsonl", bad)

    multiround = [
        {"id": i, "image": f"images/{name}.png", "question": "What colour is the picture?", "follow_up": "Are you sure?"}
        for i, name in enumerate(list(COLOURS)[:3])
    ]
    write_jsonl(HERE / "data" / "multiround.jsonl", multiround)


if __name__ == "__main__":
    main()
