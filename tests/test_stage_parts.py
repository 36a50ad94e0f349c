"""The deterministic parts of the LLM stages: reply parsing, seeded order, prompt budgets."""

from __future__ import annotations

import pytest
from rare_stages.common import generate_with_retries, parse_json_object
from rare_stages.distill import ReasonDistill
from rare_stages.doc2query import Doc2Query, parse_query

from rare import ChatRequest, Completion, LLMServing


@pytest.mark.parametrize("reply", [
    '{"question": "Why?", "scenario": "A nurse."}',
    'Sure! Here it is:\n```json\n{"question": "Why?", "scenario": "A nurse."}\n```\nDone.',
    'Answer: {"note": 1} no wait {"Question": "Why?", "SCENARIO": "A nurse."}',
    'preamble {broken {"question": "Why?", "scenario": "A nurse."} trailing',
])
def test_parse_query_tolerates_fences_and_chatter(reply: str) -> None:
    completion = Completion(text=reply)
    if '"note"' in reply:  # the first object lacks the fields
        with pytest.raises(ValueError, match="'question' is missing"):
            parse_query(completion)
        assert parse_json_object(reply) == {"note": 1}
    else:
        assert parse_query(completion) == ("Why?", "A nurse.")


@pytest.mark.parametrize("reply,reason", [
    ("no json here", "no JSON object"),
    ('{"question": "", "scenario": "x"}', "'question' is missing or empty"),
    ('{"question": "Why?"}', "'scenario' is missing or empty"),
    ('{"question": ["a"], "scenario": "x"}', "'question' is missing or empty"),
])
def test_parse_query_says_why_it_failed(reply: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_query(Completion(text=reply))


class Scripted(LLMServing):
    """Replies from a script, one list of replies per prompt; counts calls."""

    def __init__(self, replies: dict[str, list[str]]) -> None:
        super().__init__(model_name="scripted", max_workers=3)
        self.replies = replies
        self.calls: list[str] = []

    def complete(self, request: ChatRequest) -> Completion:
        prompt = request.messages[-1]["content"]
        self.calls.append(prompt)
        script = self.replies[prompt]
        if not script:
            raise ConnectionError("endpoint down")
        return Completion(text=script.pop(0), prompt_tokens=5, completion_tokens=7)


def test_retries_only_failed_rows_and_keeps_the_last_reply() -> None:
    serving = Scripted({"a": ['{"x": 1}'], "b": ["junk", '{"x": 2}'], "c": ["junk", "junk 2"],
                        "d": []})
    values, failures, attempts = generate_with_retries(
        serving, lambda i, a: ChatRequest.from_prompt("abcd"[i], seed=a), [0, 1, 2, 3],
        lambda c: parse_json_object(c.text or ""), max_attempts=2, desc="t")
    assert values == {0: {"x": 1}, 1: {"x": 2}}
    assert failures[2] == ("unusable reply: no JSON object in the reply", "junk 2")
    assert failures[3][0] == "ConnectionError: endpoint down"
    # a failed call is final at this level (the serving retries transport errors itself)
    assert attempts == {0: 1, 1: 2, 2: 2, 3: 1}
    assert sorted(serving.calls) == ["a", "b", "b", "c", "c", "d"]
    assert serving.usage["calls"] == 6 and serving.failures["ConnectionError"] == 1


def test_positive_position_is_seeded_and_varies() -> None:
    op = ReasonDistill(Scripted({}), seed=7)
    first = [op.arrange("POS", ["n1", "n2", "n3"], f"row{i}") for i in range(40)]
    again = [op.arrange("POS", ["n1", "n2", "n3"], f"row{i}") for i in range(40)]
    assert first == again
    for docs, where in first:
        assert docs[where] == "POS" and sorted(docs) == ["POS", "n1", "n2", "n3"]
    assert {where for _, where in first} == {0, 1, 2, 3}
    other = [ReasonDistill(Scripted({}), seed=8).arrange("POS", ["n1", "n2", "n3"], f"row{i}")
             for i in range(40)]
    assert other != first


def test_document_budgets_follow_the_context_window() -> None:
    small = Scripted({})
    small.context_window = 4096
    big = Scripted({})
    big.context_window = 32768
    assert ReasonDistill(small).doc_budget(4) < ReasonDistill(big).doc_budget(4)
    assert ReasonDistill(small, max_doc_tokens=100).doc_budget(4) == 100
    assert 0 < Doc2Query(small).doc_budget() < 4096
