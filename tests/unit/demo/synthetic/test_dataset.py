"""The synthetic dataset generator: determinism, answerability from pixels, formats, card."""

from __future__ import annotations

import base64
import collections
import io
import json
import pathlib

import pandas as pd
import pytest
from PIL import Image

from tg_llava_eval.demo.synthetic.dataset import VQA_REFERENCE_COPIES, generate_synthetic_dataset
from tg_llava_eval.demo.synthetic.questions import KIND_CATEGORIES, OPTION_LETTERS

from .oracle import answer, caption_cells, read_scene

SMALL = dict(n_train_stage1=40, n_train_stage2=60, n_test=24, image_size=64)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synth") / "a", seed=3, **SMALL)


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(dataset, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "b", seed=3, **SMALL)
    first, second = _files(dataset.root), _files(again.root)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    other = _files(generate_synthetic_dataset(tmp_path / "c", seed=4, **SMALL).root)
    assert other["stage1_captions.json"] != first["stage1_captions.json"]
    assert other["vlmeval/tgsynth_mcq.tsv"] != first["vlmeval/tgsynth_mcq.tsv"]


def test_every_test_answer_follows_from_the_pixels(dataset):
    """Decode each held-out image independently and re-answer its question (all three kinds)."""
    grid = dataset.card["grid"]
    checked = collections.Counter()
    for kind, name in dataset.vlmeval_datasets.items():
        table = pd.read_csv(dataset.lmudata_dir / f"{name}.tsv", sep="\t", dtype=str)
        for _, row in table.iterrows():
            image = Image.open(io.BytesIO(base64.b64decode(row["image"])))
            assert image.size == (64, 64)
            cells = read_scene(image, grid)
            truth = answer(row["question"], cells, grid)
            if kind == "mcq":
                options = [row[letter] for letter in OPTION_LETTERS]
                assert len(set(options)) == 4 and truth in options
                assert row["answer"] == OPTION_LETTERS[options.index(truth)], row["question"]
            elif kind == "vqa":
                assert eval(row["answer"]) == [truth] * VQA_REFERENCE_COPIES  # noqa: S307 (own file)
            else:
                assert row["answer"] == truth, row["question"]
            checked[kind] += 1
    assert checked == {"mcq": 24, "yorn": 24, "vqa": 24}


def test_lmms_documents_match_their_images(dataset):
    grid = dataset.card["grid"]
    for kind, task in dataset.lmms_tasks.items():
        folder = dataset.lmms_include_path / task
        docs = [json.loads(line) for line in (folder / "data" / "test.jsonl").read_text().splitlines()]
        assert len(docs) == 24
        for doc in docs:
            cells = read_scene(Image.open(folder / doc["image_path"]), grid)
            assert doc["answer_text"] == answer(doc["question"], cells, grid)
            if kind == "mcq_ll":
                assert doc["choices"][doc["label"]] == doc["answer_text"]


def test_training_rows_are_answerable_from_their_images(dataset):
    grid = dataset.card["grid"]
    stage1 = json.loads(dataset.stage1_json.read_text())
    assert len(stage1) == 40
    for row in stage1:
        human, gpt = row["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        cells = read_scene(Image.open(dataset.image_dir / row["image"]), grid)
        assert caption_cells(gpt["value"], grid) == cells, gpt["value"]
    stage2 = json.loads(dataset.stage2_json.read_text())
    assert len(stage2) == 60
    kinds = collections.Counter()
    for row in stage2:
        turns = row["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        if "image" not in row:
            kinds["text_only"] += 1
            assert "<image>" not in turns[0]["value"]
            continue
        kinds["multi_turn" if len(turns) > 2 else "single"] += 1
        assert turns[0]["value"].startswith("<image>\n")
        assert all("<image>" not in t["value"] for t in turns[1:])
        cells = read_scene(Image.open(dataset.image_dir / row["image"]), grid)
        for human, gpt in zip(turns[::2], turns[1::2]):
            question = human["value"].removeprefix("<image>\n")
            truth = answer(question, cells, grid)
            if "\nA. " in question:
                options = [line[3:] for line in question.split("\n") if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
                assert gpt["value"] == OPTION_LETTERS[options.index(truth)]
            else:
                assert gpt["value"] == truth
    assert kinds["text_only"] == dataset.card["counts"]["stage2_text_only"] > 0
    assert kinds["multi_turn"] == dataset.card["counts"]["stage2_multi_turn"] > 0


def test_questions_need_the_location(dataset):
    """Most attribute questions have a different answer elsewhere in the image; half of the
    Y/N items are No, and some No's are hard negatives (the object is elsewhere)."""
    rows = [json.loads(line) for line in dataset.ground_truth.read_text().splitlines()]
    located = [r for r in rows if r["kind"] != "yorn" and r["category"] in ("colour_at", "shape_at")]
    key = {"colour_at": "colour", "shape_at": "shape"}
    ambiguous_elsewhere = [
        r for r in located
        if len({c[key[r["category"]]] for c in r["scene"] if c is not None}) > 1
    ]
    assert len(ambiguous_elsewhere) >= 0.8 * len(located)
    yorn = [r for r in rows if r["kind"] == "yorn"]
    assert collections.Counter(r["answer"] for r in yorn) == {"Yes": 12, "No": 12}
    for category in KIND_CATEGORIES["yorn"]:
        answers = collections.Counter(r["answer"] for r in yorn if r["category"] == category)
        assert abs(answers["Yes"] - answers["No"]) <= 1, (category, answers)
    hard = 0
    for r in yorn:
        if r["category"] == "exists_in_region" and r["answer"] == "No":
            label = r["question"].split(" ")[3:5]
            hard += any(c is not None and [c["colour"], c["shape"]] == label for c in r["scene"])
    assert hard >= 1


def test_test_layouts_are_held_out_of_training(dataset):
    grid = dataset.card["grid"]
    rows = [json.loads(line) for line in dataset.ground_truth.read_text().splitlines()]
    test_layouts = {tuple(None if c is None else (c["colour"], c["shape"]) for c in r["scene"]) for r in rows}
    train_images = sorted(dataset.image_dir.rglob("*.png"))
    assert len(train_images) == 40 + 60 - dataset.card["counts"]["stage2_text_only"]
    for path in train_images:
        assert tuple(read_scene(Image.open(path), grid)) not in test_layouts, path


def test_the_row_drawers_serve_other_training_with_the_same_exclusions(dataset):
    """held_out_signatures is the layout set generate excludes, and the public row drawers (used by
    tools/pretrain_tiny_components.py) keep out of it; kind= opens a row with that kind."""
    import random

    from tg_llava_eval.demo.synthetic.dataset import (
        draw_caption_row,
        draw_instruction_row,
        held_out_signatures,
        with_scene_in_words,
    )

    held_out = held_out_signatures(seed=3, n_test=SMALL["n_test"], grid=dataset.card["grid"],
                                   image_size=SMALL["image_size"])
    rows = [json.loads(line) for line in dataset.ground_truth.read_text().splitlines()]
    assert held_out == {tuple(None if c is None else f"{c['colour']} {c['shape']}" for c in r["scene"]) for r in rows}
    rng = random.Random(0)
    for _ in range(50):
        scene, turns = draw_caption_row(rng, grid=2, held_out=held_out)
        assert scene.signature() not in held_out and turns[1]["value"] == scene.caption()
        scene, turns = draw_instruction_row(rng, grid=2, held_out=held_out, multi_turn_fraction=0.5,
                                            text_only_fraction=0.0, kind="mcq")
        assert scene.signature() not in held_out
        assert turns[0]["value"].startswith("<image>\n") and "\nA. " in turns[0]["value"]
        assert turns[1]["value"] in OPTION_LETTERS
        in_words = with_scene_in_words(turns, scene)
        assert in_words[0] == {"from": "human", "value": scene.caption() + turns[0]["value"][len("<image>"):]}
        assert in_words[1:] == turns[1:] and turns[0]["value"].startswith("<image>")  # the input is not changed


def test_card_counts_and_chance_levels(dataset):
    card = json.loads(dataset.card_path.read_text())
    assert card == dataset.card
    assert card["seed"] == 3 and card["generator_version"] == "2" and card["image_size"] == 64
    assert card["counts"]["test"] == {"mcq": 24, "vqa": 24, "yorn": 24}
    assert card["chance_level"]["mcq"]["uniform"] == 0.25
    assert card["chance_level"]["yorn"]["uniform"] == card["chance_level"]["yorn"]["majority"] == 0.5
    mcq = pd.read_csv(dataset.lmudata_dir / "tgsynth_mcq.tsv", sep="\t", dtype=str)
    assert card["chance_level"]["mcq"]["majority"] == round(mcq["answer"].value_counts().max() / 24, 4)
    # The question-aware prior: the best answer per category, read back from the TSVs.
    for kind, name in (("mcq", "tgsynth_mcq"), ("yorn", "tgsynth_yorn"), ("vqa", "tgsynth_openended")):
        table = pd.read_csv(dataset.lmudata_dir / f"{name}.tsv", sep="\t", dtype=str)
        best = table.groupby("category")["answer"].agg(lambda answers: answers.value_counts().max()).sum()
        prior = card["chance_level"][kind]["question_prior"]
        assert prior == round(best / 24, 4) and prior >= card["chance_level"][kind]["majority"], kind
    # VQA uniform chance, six categories in equal shares: colour 1/6, shape 1/4, count in a row or
    # column of the 2x2 grid (0..2) 1/3, the one shape's colour 1/6 and shape 1/4, all shapes (1..4) 1/4.
    assert card["counts"]["test_categories"]["vqa"] == dict.fromkeys(sorted(KIND_CATEGORIES["vqa"]), 4)
    assert card["chance_level"]["vqa"]["uniform"] == round((1 / 6 + 1 / 4 + 1 / 3 + 1 / 6 + 1 / 4 + 1 / 4) / 6, 4)
    config = json.loads(dataset.vlmeval_config.read_text())
    assert config == {"data": {
        "tgsynth_mcq": {"class": "ImageMCQDataset", "dataset": "tgsynth_mcq"},
        "tgsynth_openended": {"class": "ImageVQADataset", "dataset": "tgsynth_openended"},
        "tgsynth_yorn": {"class": "ImageYORNDataset", "dataset": "tgsynth_yorn"},
    }}


def test_image_size_and_grid_are_parameters(tmp_path):
    data = generate_synthetic_dataset(tmp_path / "g3", seed=0, n_train_stage1=6, n_train_stage2=6,
                                      n_test=6, image_size=96, grid=3)
    table = pd.read_csv(data.lmudata_dir / "tgsynth_openended.tsv", sep="\t", dtype=str)
    for _, row in table.iterrows():
        image = Image.open(io.BytesIO(base64.b64decode(row["image"])))
        assert image.size == (96, 96)
        assert [answer(row["question"], read_scene(image, 3), 3)] * VQA_REFERENCE_COPIES == eval(row["answer"])  # noqa: S307


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=20), "image_size=20"),
        (dict(grid=4), "grid=4"),
        (dict(n_test=0), "n_test=0"),
        (dict(text_only_fraction=1.5), "text_only_fraction=1.5"),
        (dict(name_prefix="MMBench"), "name_prefix='MMBench'"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        generate_synthetic_dataset(tmp_path / "x", **{**SMALL, **kwargs})


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(ValueError, match="not empty"):
        generate_synthetic_dataset(tmp_path, **SMALL)
    assert (tmp_path / "keep.txt").read_text() == "user data"
