"""The demo's ``collect --models`` file: checkpoint paths -> variant and the table names of
:data:`TRAINED` / :data:`INFERENCE_ABLATIONS`, so lmms-eval rows are named like VLMEvalKit rows."""

from __future__ import annotations

from tg_llava_eval.demo.pipeline import write_model_mapping
from tg_llava_eval.demo.settings import INFERENCE_ABLATIONS, TRAINED
from tg_llava_eval.results import read_model_mapping, resolve_identity


def demo_models(out) -> dict:
    """The shape of the train + ablate phases' results (what ``_report`` receives)."""
    models = {name: {"variant": variant, "checkpoint": str(out / "models" / variant / "stage2")}
              for name, variant in TRAINED.items()}
    models |= {name: {"variant": variant, "checkpoint": str(out / "models" / "inference-ablations" / variant)}
               for name, (variant, _, _) in INFERENCE_ABLATIONS.items()}
    return models


def test_every_checkpoint_path_is_shown_under_its_table_name(tmp_path):
    models = demo_models(tmp_path / "out")
    path = write_model_mapping(models, tmp_path / "report" / "models.csv")
    assert path.read_text().splitlines()[0] == "model,variant,name"
    mapping = read_model_mapping(path)
    assert set(mapping) == {info["checkpoint"] for info in models.values()}
    for name, info in models.items():
        # lmms-eval's model_name is the pretrained= path the demo passes: exactly the checkpoint.
        identity = resolve_identity(info["checkpoint"], mapping=mapping)
        assert (identity.table_name(info["checkpoint"]), identity.variant) == (name, info["variant"])
    assert resolve_identity(models["TG-LLaVA-tiny"]["checkpoint"], mapping=mapping).method == "TG-LLaVA"
    assert resolve_identity(models["LLaVA-1.5-tiny"]["checkpoint"], mapping=mapping).method == "LLaVA-1.5"


def test_the_vlmevalkit_names_are_left_alone(tmp_path):
    mapping = read_model_mapping(write_model_mapping(demo_models(tmp_path), tmp_path / "models.csv"))
    # VLMEvalKit folders are named after the table names already; the mapping does not list them,
    # so their identity still comes from the run manifest the wrapper writes.
    assert not set(mapping) & (set(TRAINED) | set(INFERENCE_ABLATIONS))
