"""The hostile-input corpus (tests/hostile/cases.py): every case is refused with one line that
names the problem, or answered with finite probabilities; none gives a traceback, hangs, runs
away with memory, or answers NaN.

All cases run in one long-lived worker process under an address-space limit (restarted when a
case kills it), so a runaway allocation or a hang fails its case instead of the machine. The
tally of outcomes is written to test-output/hostile_corpus.json.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.hostile.cases import CASES

TALLY: Counter = Counter()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(case, context, worker):
    result = worker.run(case.build(context))
    outcome = result["outcome"]
    TALLY["refused" if outcome == "refused" else "answered" if outcome == "answered" and result["finite"]
          else outcome if outcome != "answered" else "non_finite"] += 1
    assert outcome in ("refused", "answered"), f"{outcome}: {result.get('error')}\n{result.get('traceback', '')}"
    if outcome == "refused":
        message = result["message"]
        assert message.strip() and "Traceback" not in message, result
        assert case.expect != "answer", f"refused a valid input: {message}"
        assert case.says.lower() in message.lower(), f"the message does not say {case.says!r}: {message}"
    else:
        assert result["finite"], f"answered with non-finite probabilities: {result}"
        assert case.expect != "refuse", f"answered where a refusal was due: {result}"


@pytest.fixture(scope="module", autouse=True)
def tally(worker):
    yield
    out = Path(__file__).resolve().parents[1] / "test-output"
    out.mkdir(exist_ok=True)
    (out / "hostile_corpus.json").write_text(json.dumps({"cases": sum(TALLY.values()), **TALLY,
                                                         "worker_restarts": worker.restarts}, indent=1))


def test_the_corpus_is_large_and_covers_every_kind():
    kinds = Counter(c.name.split("/")[0] for c in CASES)
    assert len(CASES) >= 300, len(CASES)
    assert set(kinds) >= {"audio", "csv", "run", "run-id", "set", "config", "profile"}, kinds
