"""Trainable groups per stage (parameter table) and the stage-1 adapter export / strict load."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tg_llava_eval.errors import TGLlavaCheckpointError, TGLlavaConfigError
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.training.checkpoints import MANIFEST_NAME, load_stage1_adapters, save_stage1_adapters
from tg_llava_eval.training.recipe import FINETUNE, PRETRAIN
from tg_llava_eval.training.stages import apply_stage_groups
from tg_llava_eval.variants import get_variant


def _model(variant: str, seed: int = 0) -> TGLlavaForConditionalGeneration:
    torch.manual_seed(seed)
    return TGLlavaForConditionalGeneration(get_variant(variant).config())


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def tg_model():
    return _model("tiny")


def test_pretrain_groups_and_logged_table(tg_model, caplog):
    with caplog.at_level(logging.INFO, logger="tg_llava_eval.training.stages"):
        rows = {r.group: r for r in apply_stage_groups(tg_model, PRETRAIN.trainable_groups)}
    groups = {**tg_model.trainable_groups(), **tg_model.frozen_groups()}
    for name in ("projector", "text_guided_mask", "detail_perceiver"):
        assert (rows[name].status, rows[name].trainable, rows[name].frozen) == ("trainable", _numel(groups[name]), 0)
    for name in ("llm", "vision_tower", "guide_tower"):
        assert (rows[name].status, rows[name].trainable, rows[name].frozen) == ("frozen", 0, _numel(groups[name]))
    assert "other" not in rows  # every parameter belongs to a named group
    assert rows["total"].trainable + rows["total"].frozen == _numel(tg_model)
    assert rows["total"].trainable == sum(p.numel() for p in tg_model.parameters() if p.requires_grad)
    table = caplog.text
    assert "trainable parameters by group" in table and f"{rows['llm'].frozen:,}" in table


def test_finetune_adds_the_llm_and_keeps_towers_frozen(tg_model):
    rows = {r.group: r for r in apply_stage_groups(tg_model, FINETUNE.trainable_groups)}
    assert rows["llm"].status == "trainable" and rows["llm"].frozen == 0
    assert rows["vision_tower"].trainable == rows["guide_tower"].trainable == 0
    assert not any(p.requires_grad for p in tg_model.vision_tower.parameters())


def test_baseline_reports_absent_groups():
    rows = {r.group: r for r in apply_stage_groups(_model("tiny-baseline"), PRETRAIN.trainable_groups)}
    assert rows["text_guided_mask"].status == rows["detail_perceiver"].status == "absent"
    assert rows["projector"].status == "trainable"


@pytest.mark.parametrize("groups, message", [
    (("projector", "vision_tower"), r"unknown trainable group\(s\) \['vision_tower'\]"),
    (("mm_projector",), r"\['mm_projector'\]"),
])
def test_bad_group_names_are_errors(tg_model, groups, message):
    with pytest.raises(TGLlavaConfigError, match=message):
        apply_stage_groups(tg_model, groups)


def test_adapters_round_trip_with_manifest(tmp_path):
    trained, fresh = _model("tiny", seed=1), _model("tiny", seed=2)
    manifest_path = save_stage1_adapters(trained, tmp_path)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == "tg-llava-stage1-adapters" and manifest["variant"] == "tiny"
    assert sorted(manifest["groups"]) == ["detail_perceiver", "projector", "text_guided_mask"]
    assert manifest["groups"]["projector"]["num_parameters"] == _numel(trained.multi_modal_projector)
    llm_before = {k: v.clone() for k, v in fresh.language_model.state_dict().items()}
    assert load_stage1_adapters(fresh, tmp_path) == ["projector", "text_guided_mask", "detail_perceiver"]
    for name in ("projector", "text_guided_mask", "detail_perceiver"):
        want, got = trained.trainable_groups()[name].state_dict(), fresh.trainable_groups()[name].state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert all(torch.equal(v, fresh.language_model.state_dict()[k]) for k, v in llm_before.items())


def test_missing_group_is_an_error_naming_it(tmp_path):
    save_stage1_adapters(_model("tiny"), tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    del manifest["groups"]["text_guided_mask"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(TGLlavaCheckpointError, match="stage-1 group 'text_guided_mask' is missing"):
        load_stage1_adapters(_model("tiny"), tmp_path)


def test_baseline_stage1_cannot_start_a_tg_model_and_vice_versa(tmp_path):
    save_stage1_adapters(_model("tiny-baseline"), tmp_path / "baseline")
    with pytest.raises(TGLlavaCheckpointError, match="'text_guided_mask' is missing"):
        load_stage1_adapters(_model("tiny"), tmp_path / "baseline")
    save_stage1_adapters(_model("tiny"), tmp_path / "tg")
    with pytest.raises(TGLlavaCheckpointError, match=r"groups \['detail_perceiver', 'text_guided_mask'\] that this model does not have"):
        load_stage1_adapters(_model("tiny-baseline"), tmp_path / "tg")


def test_modified_or_foreign_files_are_rejected(tmp_path):
    save_stage1_adapters(_model("tiny"), tmp_path)
    path = tmp_path / "projector.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TGLlavaCheckpointError, match="'projector'.*SHA-256"):
        load_stage1_adapters(_model("tiny"), tmp_path)
    with pytest.raises(TGLlavaCheckpointError, match="has no stage1_adapters.json"):
        load_stage1_adapters(_model("tiny"), tmp_path / "nothing")


def test_shape_mismatch_names_the_keys(tmp_path):
    """Same file names and digests, but written for a model of other sizes."""
    other = TGLlavaForConditionalGeneration(get_variant("tiny").config(text_config={"hidden_size": 32}))
    save_stage1_adapters(other, tmp_path)
    with pytest.raises(TGLlavaCheckpointError, match=r"'projector'.*shape mismatches \[.*file \(32"):
        load_stage1_adapters(_model("tiny"), tmp_path)
