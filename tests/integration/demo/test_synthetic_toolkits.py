"""The synthetic test sets load and score in the REAL toolkits, offline (no model needed).

* VLMEvalKit (ms-vlmeval 0.0.20): ``build_dataset`` on ``$LMUData`` picks the custom MCQ class;
  the Y/N and VQA classes named in ``vlmeval_data_config.json`` load the other TSVs; each set's
  own ``evaluate`` with ``judge=exact_matching`` scores gold predictions 100 % and a constant
  answer at its frequency in the set (so the columns are read as intended).
* lmms-eval 0.7.3: ``TaskManager(include_path=...)`` finds the four tasks and the tag, builds
  them from the local jsonl, and the tasks' ``process_results`` score gold answers 1.0.

Both imports are slow (VLMEvalKit imports torchvision, nltk, ...: ~20 s idle, > 1 min on a
loaded 2-core machine), so each toolkit is imported once, in its own module-scoped fixture.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset

N_TEST = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("synth_toolkits") / "data", seed=11, n_train_stage1=2, n_train_stage2=2,
        n_test=N_TEST,
    )


@pytest.fixture(scope="module")
def vlmeval_datasets(dataset, tmp_path_factory):
    """The three VLMEvalKit datasets, built from a fresh ``$LMUData`` copy."""
    import shutil

    patch = pytest.MonkeyPatch()
    lmudata = tmp_path_factory.mktemp("lmudata") / "LMUData"
    shutil.copytree(dataset.lmudata_dir, lmudata)
    patch.setenv("LMUData", str(lmudata))
    patch.delenv("OPENAI_API_KEY", raising=False)
    patch.delenv("MMEVAL_ROOT", raising=False)
    # Importing VLMEvalKit runs `torch.set_grad_enabled(False)` (vlmeval/vlm/__init__.py): restore
    # the mode so that later tests in this process can still train.
    import torch

    grad_mode = torch.is_grad_enabled()
    import vlmeval.dataset as vd

    torch.set_grad_enabled(grad_mode)

    config = json.loads(dataset.vlmeval_config.read_text())["data"]
    built = {"auto_mcq": vd.build_dataset(dataset.vlmeval_datasets["mcq"])}
    for name, entry in config.items():
        built[name] = getattr(vd, entry["class"])(dataset=entry["dataset"])
    yield built
    patch.undo()


def _evaluate(vlm_dataset, predictions, work_dir, tag):
    """Run the dataset's own ``evaluate`` on a prediction file (as ``run.py`` writes one)."""
    from vlmeval.smp import dump

    data = vlm_dataset.data.drop(columns=["image"]).copy()
    data["prediction"] = predictions(data)
    path = work_dir / f"{tag}_{vlm_dataset.dataset_name}.xlsx"
    dump(data, str(path))
    result = vlm_dataset.evaluate(str(path), model="exact_matching", nproc=1)
    return float(result["Overall"].iloc[0])


def test_vlmeval_builds_the_custom_classes_offline(dataset, vlmeval_datasets):
    import vlmeval.dataset as vd

    names = dataset.vlmeval_datasets
    assert type(vlmeval_datasets["auto_mcq"]) is vd.CustomMCQDataset
    assert type(vlmeval_datasets[names["yorn"]]) is vd.ImageYORNDataset
    assert type(vlmeval_datasets[names["vqa"]]) is vd.ImageVQADataset
    assert vd.DATASET_TYPE(names["vqa"]) == "VQA"
    for built in vlmeval_datasets.values():
        assert len(built) == N_TEST
    message = vlmeval_datasets["auto_mcq"].build_prompt(0)
    image, text = message
    assert image["type"] == "image" and text["type"] == "text"
    from PIL import Image

    assert Image.open(image["value"]).size == (64, 64)
    row = vlmeval_datasets["auto_mcq"].data.iloc[0]
    assert f"Question: {row['question']}" in text["value"]
    assert f"A. {row['A']}\nB. {row['B']}" in text["value"]


def test_vlmeval_exact_matching_scores(dataset, vlmeval_datasets, tmp_path):
    names = dataset.vlmeval_datasets
    mcq, yorn, vqa = (vlmeval_datasets[names[k]] for k in ("mcq", "yorn", "vqa"))
    assert _evaluate(mcq, lambda d: list(d["answer"]), tmp_path, "gold") == 1.0
    share_a = float((mcq.data["answer"] == "A").mean())
    assert _evaluate(mcq, lambda d: ["A"] * len(d), tmp_path, "const") == pytest.approx(share_a)
    assert _evaluate(yorn, lambda d: list(d["answer"]), tmp_path, "gold") == 100.0
    assert _evaluate(yorn, lambda d: ["Yes"] * len(d), tmp_path, "const") == 50.0
    gold = [eval(a)[0] for a in vqa.data["answer"]]  # noqa: S307 (list literals we wrote)
    assert _evaluate(vqa, lambda d: gold, tmp_path, "gold") == 100.0
    share_red = sum(a == "red" for a in gold) / len(gold)
    assert _evaluate(vqa, lambda d: ["red"] * len(d), tmp_path, "const") == pytest.approx(100 * share_red)


def test_lmms_eval_task_manager_builds_the_local_tasks(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "lmms_datasets"))
    from lmms_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(dataset.lmms_include_path))
    assert set(dataset.lmms_tasks.values()) | {dataset.lmms_tag} <= set(manager.all_tasks)
    tasks = get_task_dict([dataset.lmms_tag], manager)
    flat = {}
    for key, value in tasks.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    assert set(flat) == set(dataset.lmms_tasks.values())
    truth = pd.read_json(dataset.ground_truth, lines=True)
    for kind, name in dataset.lmms_tasks.items():
        task = flat[name]
        docs = list(task.test_docs())
        assert len(docs) == N_TEST
        for doc in docs:
            (image,) = task.doc_to_visual(doc)
            assert image.size == (64, 64)
            text = task.doc_to_text(doc)
            assert text.startswith(doc["question"])
            if kind == "mcq_ll":
                assert task.OUTPUT_TYPE == "multiple_choice"
                choices = task.doc_to_choice(doc)
                label = task.doc_to_target(doc)
                assert choices[label] == doc["answer_text"]
                # lmms-eval's multiple_choice takes the argmin: models return a loss (mean NLL).
                scores = [(1.0 if i == label else 5.0, i == label) for i in range(len(choices))]
                assert task.process_results(doc, scores)["acc"] == 1.0
                wrong = [(5.0 if i == label else 1.0, False) for i in range(len(choices))]
                assert task.process_results(doc, wrong)["acc"] == 0.0
                continue
            assert task.OUTPUT_TYPE == "generate_until"
            row = truth[(truth["kind"] == kind) & (truth["index"] == doc["id"])].iloc[0]
            assert task.doc_to_target(doc) == row["answer"]
            assert task.process_results(doc, [doc["answer"]]) == {"accuracy": 1.0}
            if kind == "mcq":
                assert "\nA. " in text and text.endswith("directly.")
                assert task.process_results(doc, [f"{doc['answer']}. {doc['answer_text']}"]) == {"accuracy": 1.0}
                other = next(o for o in doc["options"] if o != doc["answer_text"])
                assert task.process_results(doc, [other]) == {"accuracy": 0.0}
            elif kind == "yorn":
                flipped = "No" if doc["answer"] == "Yes" else "Yes"
                assert task.process_results(doc, [f"{flipped}, it is not."]) == {"accuracy": 0.0}
            else:
                assert task.process_results(doc, [f"The {doc['answer'].capitalize()}."]) == {"accuracy": 1.0}
