"""The public API at the top of the package, imported lazily."""

from __future__ import annotations

import pytest

from tests.python_probe import run_python_probe


@pytest.mark.slow
def test_import_is_torch_free_and_names_resolve_on_use():
    run_python_probe(
        "import sys\n"
        "import tg_llava_eval\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "from tg_llava_eval import TGLlavaConfig, TGLlavaForConditionalGeneration, TGLlavaProcessor\n"
        "from tg_llava_eval import TGLlavaEngine, GenerationRequest, get_variant\n"
        "from tg_llava_eval.modeling import TGLlavaConfig as C\n"
        "from tg_llava_eval.inference import TGLlavaEngine as E\n"
        "assert TGLlavaConfig is C and TGLlavaEngine is E\n"
        "assert isinstance(get_variant('tiny').config(), TGLlavaConfig)\n"
        "assert set(tg_llava_eval.__all__) <= set(dir(tg_llava_eval))\n"
    )


def test_unknown_name_is_an_attribute_error():
    import tg_llava_eval

    with pytest.raises(AttributeError, match="no attribute 'TGLlavaModel'"):
        tg_llava_eval.TGLlavaModel  # noqa: B018
