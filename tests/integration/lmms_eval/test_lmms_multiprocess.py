"""Two processes on the CPU (``torchrun --nproc_per_node 2 -m lmms_eval``) give the same results as
one: lmms-eval shards the documents by rank, each rank's wrapper answers its share on its own
device, and rank 0 gathers the samples and writes the files.
"""

from __future__ import annotations

import re

import pytest
from tg_lmms_helpers import ALL_TASKS, MC_TASK

pytestmark = pytest.mark.e2e


def _metrics(run, task):
    return {key: value for key, value in run.results["results"][task].items() if key.endswith(",none") and "stderr" not in key}


def test_two_processes_give_the_same_results_as_one(cli_single_run, cli_two_process_run):
    one, two = cli_single_run, cli_two_process_run
    for task in ALL_TASKS:
        assert two.results["n-samples"][task] == one.results["n-samples"][task]
        assert [s["doc_id"] for s in two.samples[task]] == [s["doc_id"] for s in one.samples[task]]
        for a, b in zip(one.samples[task], two.samples[task]):
            if task == MC_TASK:  # stringified (loss, greedy) pairs
                assert [g for _, g in b["filtered_resps"]] == [g for _, g in a["filtered_resps"]]
                assert [float(v) for v, _ in b["filtered_resps"]] == pytest.approx(
                    [float(v) for v, _ in a["filtered_resps"]], abs=1e-5
                )
            else:
                assert b["filtered_resps"] == a["filtered_resps"], (task, a["doc_id"])
        assert _metrics(two, task) == pytest.approx(_metrics(one, task))
    assert (two.results_dir / "tg_llava_run.json").is_file()


def test_each_rank_answered_its_own_share(cli_two_process_run):
    """Both ranks ran generate_until, each on fewer requests than the 14 of the whole run."""
    counts = {
        int(rank): int(total)
        for _, total, rank in re.findall(r"tg_llava: (\d+) of (\d+) generate_until requests failed on rank (\d+)", cli_two_process_run.log)
    }
    assert set(counts) == {0, 1}, cli_two_process_run.log[-3000:]
    assert all(0 < total < 14 for total in counts.values()) and sum(counts.values()) >= 14
