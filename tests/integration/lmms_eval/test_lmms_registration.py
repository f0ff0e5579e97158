"""Registration of TG-LLaVA in lmms-eval 0.7.3 through our package's entry point, plus the
wrapper's argument checks that need no checkpoint.

lmms-eval is the real installed one and unmodified; the entry point comes from setup.cfg of the
editable install (no ``LMMS_EVAL_PLUGINS``).
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from tests.python_probe import run_python_probe
from tg_llava_eval.model_wrappers import lmms_eval_registration as registration

WRAPPER = "tg_llava_eval.model_wrappers.lmms_eval"


def test_entry_point_is_declared_by_the_installed_package():
    eps = {ep.name: ep.value for ep in entry_points(group="lmms_eval.models")}
    assert eps.get("tg_llava") == "tg_llava_eval.model_wrappers.lmms_eval_registration:manifests", (
        f"lmms_eval.models entry points: {eps} (is the package installed with `pip install -e .`?)"
    )


def test_lmms_eval_registry_resolves_every_name_to_our_simple_class():
    import lmms_eval.models as models
    from lmms_eval.api.model import lmms

    names = {registration.MODEL_ID: "TGLlava", **{a: "TGLlava" for a in registration.MODEL_ALIASES}}
    for variant in registration.registered_variants():
        class_name = registration.wrapper_class_name(variant)
        names.update({variant.lmms_eval_id: class_name, variant.name: class_name, variant.vlmevalkit_name: class_name})
    available = set(models.list_available_models(include_aliases=True))
    for name, class_name in names.items():
        assert name in available, f"{name} not registered"
        cls = models.get_model(name)
        assert (cls.__module__, cls.__name__) == (WRAPPER, class_name), name
        assert issubclass(cls, lmms) and cls.is_simple
    # Golden names: what a user types.
    assert models.get_model_manifest("TG-LLaVA-Qwen2-7B").model_id == "tg_llava_qwen2_7b"
    assert models.get_model_manifest("LLaVA-1.5-Llama3-8B-TG-Baseline").model_id == "llava_1_5_llama3_8b"
    assert models.get_model_manifest("tg-llava-vicuna-13b-no-dp").model_id == "tg_llava_vicuna_13b_no_dp"
    assert models.get_model("tg_llava_qwen2_7b").default_variant == "tg-llava-qwen2-7b"


def test_every_paper_variant_has_a_checked_lmms_eval_class():
    from tg_llava_eval.model_wrappers import lmms_eval as wrapper
    from tg_llava_eval.variants import PAPER_LLMS, VARIANTS

    registered = {v.name for v in registration.registered_variants()}
    assert registered == {name for name, v in VARIANTS.items() if v.backbone.key in PAPER_LLMS}
    assert len(registered) == 21  # 3 LLMs x (TG-LLaVA, LLaVA-1.5, two ablations, three SigLIP tower sets)
    for variant in registration.registered_variants():
        cls = getattr(wrapper, registration.wrapper_class_name(variant))
        assert issubclass(cls, wrapper.TGLlava)
        assert (cls.model_id, cls.default_variant) == (variant.lmms_eval_id, variant.name)
    assert wrapper.TGLlava.default_variant is None and wrapper.TGLlava.model_id == "tg_llava"


def test_registration_module_is_light_and_safe_to_import_before_lmms_eval():
    """Importing the entry-point module first must neither pull heavy modules nor lose the
    registration (a module-level lmms-eval import would re-enter it half-initialised)."""
    run_python_probe(
        "import sys\n"
        "import tg_llava_eval.model_wrappers.lmms_eval_registration\n"
        "heavy = [m for m in ('torch', 'transformers', 'lmms_eval') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import lmms_eval.models as m\n"
        "assert 'tg_llava' in m.list_available_models(), m.list_available_models()\n"
        "assert 'tg_llava_eval.model_wrappers.lmms_eval' not in sys.modules\n"
        "assert 'torch' not in sys.modules\n",
        forbidden_output="Failed to load model entry-point manifests",
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"foo": 1}, TypeError, "foo"),
        ({"batch_size": "auto"}, ValueError, "batch_size"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"loglikelihood_as": "prob"}, ValueError, "loglikelihood_as"),
        ({"cache_vision": "yes"}, ValueError, "cache_vision"),
        ({"max_length": -3}, ValueError, "max_length"),
    ],
)
def test_bad_model_args_are_rejected_before_loading(kwargs, error, needle):
    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    with pytest.raises(error, match=needle):
        TGLlava(pretrained="/nonexistent/checkpoint", **kwargs)


def test_generation_settings_from_gen_kwargs():
    from tg_llava_eval.model_wrappers.lmms_eval import generation_settings

    assert generation_settings(
        {"until": ["\n", "ASSISTANT:"], "max_new_tokens": 16, "temperature": 0, "top_p": None, "num_beams": 1}
    ) == {"max_new_tokens": 16, "temperature": 0.0, "top_p": None, "num_beams": 1, "stop": ("\n", "ASSISTANT:")}
    # a bare string `until`, do_sample false overriding a temperature, beams as a string
    settings = generation_settings({"until": "\n\n", "temperature": 0.7, "do_sample": False, "num_beams": "3"})
    assert settings == {"max_new_tokens": None, "temperature": 0.0, "top_p": None, "num_beams": 3, "stop": ("\n\n",)}
    assert generation_settings({"do_sample": True})["temperature"] == 1.0
    assert generation_settings({"do_sample": True, "temperature": 0.2, "top_p": 0.9})["top_p"] == 0.9
    assert generation_settings({})["stop"] == ()


@pytest.mark.parametrize(
    ("gen_kwargs", "needle"),
    [
        ({"until": 3}, "until"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"num_beams": 1.5}, "num_beams"),
        ({"temperature": -1}, "temperature"),
    ],
)
def test_generation_settings_reject_bad_values_naming_task_and_key(gen_kwargs, needle):
    from tg_llava_eval.model_wrappers.lmms_eval import generation_settings

    with pytest.raises(ValueError, match=f"task mme: gen_kwargs {needle}"):
        generation_settings(gen_kwargs, "mme")
