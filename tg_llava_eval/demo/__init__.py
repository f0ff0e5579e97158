"""The demo (``make demo`` = ``tg-llava-eval demo``): the whole chain on tiny models and a bundled
synthetic benchmark, on a CPU, with nothing downloaded. An application at the edge of the library:
it imports the library and drives its command lines; nothing in the library imports it.

* :mod:`.settings` — :class:`DemoSettings` (sizes, schedules), :class:`DemoResult`, the models'
  table names;
* :mod:`.phases` — the phase runner and the fingerprints that decide what a second run reuses;
* :mod:`.pipeline` — :func:`run_demo` and its phases: data, train, ablate, VLMEvalKit, lmms-eval,
  report;
* :mod:`.ablation_report` — accuracy against chance and the ablation report;
* :mod:`.synthetic` — the synthetic benchmark (scenes, questions, both toolkits' test formats),
  also the data of the training smoke tests.

What each phase runs, its timing and what the tiny models learn: ``docs/demo.md``.
"""

from tg_llava_eval.demo.pipeline import run_demo
from tg_llava_eval.demo.settings import DemoResult, DemoSettings

__all__ = ["DemoResult", "DemoSettings", "run_demo"]
