"""Grounded rejection sampling: which documents a reply's final answer cites, and the
verdict (table-driven); the gold-answer check."""

from __future__ import annotations

import pytest
from rare_stages.grounding import (
    answers_match,
    cited_labels,
    classify,
    final_answer,
    resolve_checker,
)

# (reply, positive (0-based), documents, grounded, cited)
CASES = {
    "cites the positive": (
        "Document 1 is off topic.\nDocument 3 explains it.\nAnswer: 42 [Document 3]",
        2, 4, True, ["Document 3"]),
    "cites only a negative": (
        "Document 3 explains it.\nAnswer: 42 [Document 1]", 2, 4, False, ["Document 1"]),
    "cites none": ("Document 3 explains it.\nAnswer: 42", 2, 4, False, []),
    "no answer line, last paragraph cites the positive": (
        "Step 1 looks at everything.\n\nSo the answer is 42, as Document 2 says.", 1, 3, True,
        ["Document 2"]),
    "several, the positive among them": (
        "Answer: 42, from Documents 2 and 4", 3, 4, True, ["Document 2", "Document 4"]),
    "several, negatives only": (
        "Answer: 42 [Document 1][Document 2]", 2, 4, False, ["Document 1", "Document 2"]),
    "every document": (
        "Answer: 42 (Documents 1, 2, 3 and 4)", 0, 4, False,
        ["Document 1", "Document 2", "Document 3", "Document 4"]),
    "the only document": ("Answer: 42 [Document 1]", 0, 1, True, ["Document 1"]),
    "reasoning cites the positive, the answer a negative": (
        "Document 2 is the key source.\nAnswer: 42 [Document 4]", 1, 4, False,
        ["Document 4"]),
    "the last Answer marker counts": (
        "Answer: maybe [Document 1]\nOn reflection:\n**Final answer:** 42 (doc #3)", 2, 4,
        True, ["Document 3"]),
    "out-of-range labels are ignored": ("Answer: 42 [Document 9]", 0, 4, False, []),
}


@pytest.mark.parametrize("reply,positive,count,grounded,cited", CASES.values(),
                         ids=CASES.keys())
def test_grounding_table(reply: str, positive: int, count: int, grounded: bool,
                         cited: list[str]) -> None:
    verdict = classify(reply, positive, count)
    assert verdict.grounded is grounded, verdict.reason
    assert verdict.cited == cited
    assert bool(verdict.reason) is not grounded


def test_final_answer_and_citation_forms() -> None:
    assert final_answer("x\nAnswer: yes [Document 2]") == ("yes [Document 2]", True)
    assert final_answer("one\n\ntwo") == ("two", False)
    assert cited_labels("Document 2 and Document 3; doc. 1, docs 4/2", 4) == [
        "Document 2", "Document 3", "Document 1", "Document 4"]


@pytest.mark.parametrize("answer,gold,match", [
    ("Paris [Document 2]", "paris", True),
    ("The capital is Paris, France.", "Paris, France", True),
    ("B. Because the dose is too high", "B", True),
    ("A, not B", "B", False),
    ("Lyon [Document 1]", "Paris", False),
    ("", "Paris", False),
])
def test_answers_match(answer: str, gold: str, match: bool) -> None:
    assert answers_match(answer, gold) is match


def test_checker_by_name() -> None:
    assert resolve_checker(None) is answers_match
    assert resolve_checker("rare_stages.grounding:answers_match") is answers_match
    with pytest.raises(ValueError, match="module:function"):
        resolve_checker("answers_match")
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_checker("rare_stages.grounding:nothing_here")
