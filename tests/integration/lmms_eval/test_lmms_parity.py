"""In-process checks of the lmms-eval wrapper against the real lmms-eval evaluator and the model.

* batch size 1 and 4 give identical generations (and the same multiple-choice scores) through
  ``lmms_eval.evaluator.simple_evaluate`` on the local tasks;
* the log-likelihood the wrapper hands to lmms-eval equals the sum of log-softmax values of the
  continuation tokens computed here from the model's own ``forward`` on the processor's batch
  (a different path from the engine's cached vision features), with the sign lmms-eval's
  ``multiple_choice`` argmin needs; a continuation made of the model's greedy token is flagged
  greedy.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from PIL import Image
from tg_lmms_helpers import GEN_TASK, LMMS_TASKS_DIR, MC_TASK, MULTIROUND_TASK

PARITY_TASKS = (GEN_TASK, MC_TASK, MULTIROUND_TASK)


@pytest.fixture(scope="module")
def evaluate(tiny_checkpoint, lmms_cache_dir):
    """``evaluate(batch_size)`` -> lmms-eval's results dict (with ``samples``), memoised."""
    # lmms-eval resolves its datasets cache once per process (lru_cache): set it before any run.
    os.environ.setdefault("LMMS_EVAL_DATASETS_CACHE", str(lmms_cache_dir / "datasets"))
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    manager = TaskManager(verbosity="WARNING", include_path=str(LMMS_TASKS_DIR), include_defaults=False)
    runs = {}

    def run(batch_size: int) -> dict:
        if batch_size not in runs:
            runs[batch_size] = simple_evaluate(
                model="tg_llava",
                model_args=f"pretrained={tiny_checkpoint}",
                tasks=list(PARITY_TASKS),
                batch_size=batch_size,
                device="cpu",
                task_manager=manager,
                log_samples=True,
                bootstrap_iters=0,
                verbosity="WARNING",
            )
        return runs[batch_size]

    return run


@pytest.fixture(scope="module")
def wrapper(tiny_checkpoint):
    """One ``TGLlava`` on the tiny checkpoint, driven directly with lmms-eval Instances."""
    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    return TGLlava(pretrained=str(tiny_checkpoint), device="cpu", batch_size=2)


def _responses(results: dict, task: str) -> list:
    """Per document (by doc_id): the answer (generation), the list of rounds (multi-round), or the
    ``(loss, greedy)`` pair of every option (multiple choice)."""
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    if task == MC_TASK:
        return [[tuple(pair) for pair in sample["filtered_resps"]] for sample in samples]
    return [sample["filtered_resps"][0] for sample in samples]


def test_batch_size_1_and_4_give_identical_results(evaluate):
    one, four = evaluate(1), evaluate(4)
    gen_1, gen_4 = _responses(one, GEN_TASK), _responses(four, GEN_TASK)
    assert len(gen_1) == 8 and all(isinstance(text, str) and text for text in gen_1), gen_1
    assert not any(text.startswith("[tg_llava error]") for text in gen_1), gen_1
    assert gen_4 == gen_1
    assert _responses(four, MULTIROUND_TASK) == _responses(one, MULTIROUND_TASK)
    assert all(len(rounds) == 2 for rounds in _responses(one, MULTIROUND_TASK))
    # Multiple choice: one (loss, greedy) pair per option; padding may move the last float bits.
    for pairs_1, pairs_4 in zip(_responses(one, MC_TASK), _responses(four, MC_TASK)):
        assert len(pairs_1) == 4
        assert [g for _, g in pairs_1] == [g for _, g in pairs_4]
        assert [v for v, _ in pairs_4] == pytest.approx([v for v, _ in pairs_1], abs=1e-4)
    assert one["results"][MC_TASK]["acc,none"] == four["results"][MC_TASK]["acc,none"]
    assert one["results"][GEN_TASK]["exact_match,none"] == four["results"][GEN_TASK]["exact_match,none"]


def _instance(request_type: str, arguments: tuple, doc_id: int = 0):
    from lmms_eval.api.instance import Instance

    return Instance(request_type=request_type, arguments=arguments, idx=0, metadata={"task": "t", "doc_id": doc_id, "repeats": 1})


def _forward_logprobs(engine, question: str, image, continuation: str | None):
    """``(log-probs [L, V] of the scored row, labels [L])`` from the model's own forward."""
    processor = engine.processor
    prompt = processor.apply_template(question, has_image=True)
    batch = processor(
        [prompt], [image], [processor.inference_guide_text(question)], padding_side="right",
        continuations=None if continuation is None else [continuation],
    )
    inputs = {k: v.to(engine.device) for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = engine.model(**inputs).logits.float()[0]
    return torch.log_softmax(logits, dim=-1), batch.get("labels")


def test_loglikelihood_matches_the_models_own_forward(wrapper):
    engine = wrapper.engine
    image = Image.new("RGB", (40, 28), (30, 180, 60))
    question = "Which colour is shown?\nA. red\nB. green\nAnswer with the option's letter."
    wrapper.task_dict = {"t": {"test": [{"image": image}]}}

    def doc_to_visual(doc):
        return [doc["image"]]

    log_probs, labels = _forward_logprobs(engine, question, image, "green")
    labels = labels[0]
    scored = (labels != -100).nonzero().flatten()
    # Position t predicts token t + 1.
    expected = float(sum(log_probs[t - 1, labels[t]] for t in scored))
    expected_greedy = bool(all(log_probs[t - 1].argmax() == labels[t] for t in scored))

    requests = [
        _instance("loglikelihood", (question, " green", doc_to_visual, 0, "t", "test")),  # lmms-eval's " " delimiter
        _instance("loglikelihood", (question, "green", doc_to_visual, 0, "t", "test")),
        _instance("loglikelihood", ("", "green")),  # acc_mutual_info's context-free form
    ]
    before = wrapper.failure_counts["loglikelihood"]
    (loss, greedy), (loss_bare, _), unconditional = [out.text for out in wrapper.loglikelihood(requests)]
    assert loss == pytest.approx(-expected, rel=1e-4, abs=1e-4)
    assert loss > 0 and greedy is expected_greedy
    assert loss_bare == loss  # lmms-eval's leading delimiter is not scored
    # Not supported (TG-LLaVA scores answers to a question): reported, not crashed.
    assert unconditional == (math.inf, False)
    assert wrapper.failure_counts["loglikelihood"] - before == 1


def test_greedy_flag_and_logprob_convention(tiny_checkpoint, wrapper):
    """A continuation made of the model's argmax token is greedy; ``loglikelihood_as=logprob``
    returns the log-probability itself."""
    engine = wrapper.engine
    tokenizer = engine.processor.tokenizer
    image = Image.new("RGB", (32, 32), (40, 60, 220))
    wrapper.task_dict = {"t": {"test": [{"image": image}]}}
    chosen = None
    for question in ("What colour is the picture?", "Describe the image.", "Is it blue?", "Name one object.", "What is shown?"):
        log_probs, _ = _forward_logprobs(engine, question, image, None)
        token = int(log_probs[-1].argmax())
        text = tokenizer.decode([token])
        if text and text == text.strip() and tokenizer(text, add_special_tokens=False)["input_ids"] == [token]:
            chosen = (question, text, float(log_probs[-1, token]))
            break
    assert chosen is not None, "no prompt whose greedy first token round-trips through the tokenizer"
    question, text, logprob = chosen

    def doc_to_visual(doc):
        return [doc["image"]]

    request = _instance("loglikelihood", (question, " " + text, doc_to_visual, 0, "t", "test"))
    loss, greedy = wrapper.loglikelihood([request])[0].text
    assert greedy is True
    assert loss == pytest.approx(-logprob, abs=1e-4)

    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    as_logprob = TGLlava(pretrained=str(tiny_checkpoint), device="cpu", loglikelihood_as="logprob")
    as_logprob.task_dict = wrapper.task_dict
    value, greedy_again = as_logprob.loglikelihood([request])[0].text
    assert value == pytest.approx(logprob, abs=1e-4) and greedy_again is True


def test_bad_requests_are_answered_counted_and_logged(wrapper, caplog):
    """Direct calls: a doc_to_visual that raises, an audio item, an empty question; the good
    document is still answered and the count is logged."""
    image = Image.new("RGB", (24, 24), (220, 30, 30))
    wrapper.task_dict = {"t": {"test": [{"image": image}, {"image": None}, {"image": image}]}}

    def doc_to_visual(doc):
        if doc["image"] is None:
            raise FileNotFoundError("images/gone.png")
        return [doc["image"]]

    def audio_visual(doc):
        return [{"array": [0.0], "sampling_rate": 16000}]

    gen_kwargs = {"max_new_tokens": 3, "until": ["\n"], "temperature": 0}
    requests = [
        _instance("generate_until", ("What colour?", dict(gen_kwargs), doc_to_visual, 0, "t", "test"), 0),
        _instance("generate_until", ("What colour?", dict(gen_kwargs), doc_to_visual, 1, "t", "test"), 1),
        _instance("generate_until", ("What colour?", dict(gen_kwargs), audio_visual, 2, "t", "test"), 2),
        _instance("generate_until", ("   ", dict(gen_kwargs), doc_to_visual, 2, "t", "test"), 2),
    ]
    before = wrapper.failure_counts["generate_until"]
    with caplog.at_level("WARNING"):
        texts = [out.text for out in wrapper.generate_until(requests)]
    assert not texts[0].startswith("[tg_llava error]")
    assert texts[1].startswith("[tg_llava error] request t/test doc 1: doc_to_visual raised FileNotFoundError")
    assert texts[2].startswith("[tg_llava error] request t/test doc 2: TG-LLaVA reads images only")
    assert texts[3].startswith("[tg_llava error] request t/test doc 2:") and "empty question" in texts[3]
    assert wrapper.failure_counts["generate_until"] - before == 3
    assert "tg_llava: 3 of 4 generate_until requests failed on rank 0" in caplog.text


def test_prompt_longer_than_max_length_is_reported(tiny_checkpoint):
    """``max_length`` reaches the engine: a ~600-word question no longer fits and is reported."""
    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    short = TGLlava(pretrained=str(tiny_checkpoint), device="cpu", max_length=256)
    short.task_dict = {"t": {"test": [{"image": Image.new("RGB", (24, 24), (220, 30, 30))}]}}
    question = " ".join(f"Detail {i} about the red picture is worth noting." for i in range(60))
    request = _instance("generate_until", (question, {"max_new_tokens": 2}, lambda doc: [doc["image"]], 0, "t", "test"))
    (answer,) = short.generate_until([request])
    assert answer.text.startswith("[tg_llava error] request t/test doc 0: ")
    assert "max_length=256" in answer.text


def test_cli_results_dir_follows_lmms_eval_naming(tmp_path):
    import lmms_eval.__main__  # noqa: F401 - the CLI module must be loaded for the rule to apply

    from tg_llava_eval.model_wrappers.lmms_eval import cli_results_dir, write_run_manifest

    argv = ["--model", "tg_llava", "--model_args", "pretrained=/ckpts/tg/llava-7b,variant=tiny",
            "--tasks", "mme", "--output_path", str(tmp_path)]  # fmt: skip
    assert cli_results_dir(argv) == tmp_path / "tg__llava-7b"
    assert cli_results_dir(argv[:-2]) is None  # no --output_path: lmms-eval writes nothing
    assert cli_results_dir(["-q", "tests"]) is None  # not an lmms-eval command line
    from tg_llava_eval.results.manifest import build_run_manifest, read_run_manifest

    with pytest.raises(ValueError, match="'switches' must map"):
        build_run_manifest(toolkit="lmms-eval", toolkit_version="0.7.3", model_name="tg_llava", variant=None,
                           llm="qwen2", checkpoint="/c", switches={"fom": True})
    manifest = build_run_manifest(toolkit="lmms-eval", toolkit_version="0.7.3", model_name="tg_llava", variant=None,
                                  llm="qwen2", checkpoint="/c")
    written = write_run_manifest(tmp_path, manifest)
    assert written == tmp_path / "tg_llava_run.json" and '"llm": "qwen2"' in written.read_text()
    assert read_run_manifest(written) == manifest


def test_declared_variant_must_match_the_checkpoint(tiny_checkpoint):
    """``--model tg_llava_qwen2_7b`` / ``variant=`` on the tiny checkpoint fail, naming the fields."""
    from tg_llava_eval.errors import TGLlavaConfigError
    from tg_llava_eval.model_wrappers import lmms_eval as wrapper
    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    with pytest.raises(TGLlavaConfigError, match=r"is not a tg-llava-qwen2-7b checkpoint.*text_config.hidden_size"):
        wrapper.TGLlava_tg_llava_qwen2_7b(pretrained=str(tiny_checkpoint), device="cpu")
    with pytest.raises(TGLlavaConfigError, match=r"use_text_guided_mask: checkpoint True vs variant False"):
        TGLlava(pretrained=str(tiny_checkpoint), device="cpu", variant="tiny-baseline")
    model = TGLlava(pretrained=str(tiny_checkpoint), device="cpu")  # the checkpoint records its variant
    assert (model.variant, model.run_manifest().variant) == ("tiny", "tiny")
