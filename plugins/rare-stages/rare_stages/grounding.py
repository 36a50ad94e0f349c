"""Is a reasoning grounded? Which documents its final answer cites, and whether it is right.

The teacher sees the positive among hard negatives, labelled ``Document 1`` .. ``Document
N``, and is asked to end with a line ``Answer: ...`` naming the document(s) it rests on. A
reply is *grounded* when that final answer cites the positive's label, is not a choice of
every document at once, and (obviously) cites something: citing only negatives, nothing, or
all documents indiscriminately is not grounded.

The final answer is the text after the reply's last ``Answer:`` marker (``Final answer:``,
``**Answer:**`` and the like count too); a reply without one has its last paragraph taken
as the final answer. A citation is ``Document 2``, ``[Document 2]``, ``document #2``,
``Doc 2`` or a list such as ``Documents 1, 3 and 4``; numbers outside 1..N are ignored.

An optional gold answer is checked by an :data:`AnswerChecker` (default
:func:`answers_match`: a normalised match).
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

#: ``checker(final_answer, gold_answer) -> bool``
AnswerChecker = Callable[[str, str], bool]

_ANSWER = re.compile(r"^[\s>#*_\-]*(?:(?:the\s+)?(?:final\s+)?answer|最终答案|答案)\s*[*_]*\s*"
                     r"[:：]\s*[*_]*", re.IGNORECASE | re.MULTILINE)
_CITE = re.compile(
    r"\b(?:documents?|docs?)\.?\s*#?\s*"
    r"(\d+(?:\s*(?:,|&|/|\band\b|\bor\b)\s*(?:(?:documents?|docs?)\.?\s*)?#?\s*\d+)*)",
    re.IGNORECASE)
#: the Chinese prompts' citations: ``文档 2``, ``[文档 2]``, ``文档1、3和4``
_CITE_ZH = re.compile(r"文档\s*#?\s*(\d+(?:\s*(?:[,，、/&]|和|与|及|或)\s*(?:文档\s*)?#?\s*\d+)*)")
_NUMBER = re.compile(r"\d+")
_LABELS = {"en": "Document {n}", "zh": "文档 {n}"}


def label(position: int, language: str = "en") -> str:
    """The label of the document at 0-based ``position``: ``Document 1`` (``文档 1``) for 0."""
    return _LABELS.get(language, _LABELS["en"]).format(n=position + 1)


def final_answer(reply: str) -> tuple[str, bool]:
    """The final answer of ``reply`` and whether an ``Answer:`` marker introduced it."""
    text = reply.strip()
    matches = list(_ANSWER.finditer(text))
    if matches:
        last = matches[-1]
        return text[last.end():].strip(), True
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return (paragraphs[-1] if paragraphs else ""), False


def cited_labels(text: str, count: int, language: str = "en") -> list[str]:
    """The document labels ``text`` cites, in order of first mention, within 1..``count``
    (either language's form of a citation counts; labels come back in ``language``)."""
    found: list[tuple[int, int]] = []  # (where, number)
    for pattern in (_CITE, _CITE_ZH):
        for match in pattern.finditer(text):
            found.extend((match.start(), int(n)) for n in _NUMBER.findall(match.group(1)))
    seen: dict[int, None] = {}
    for _, n in sorted(found, key=lambda item: item[0]):
        if 1 <= n <= count:
            seen.setdefault(n, None)
    return [label(n - 1, language) for n in seen]


@dataclass
class Grounding:
    """The verdict on one reply."""

    grounded: bool
    cited: list[str] = field(default_factory=list)
    answer: str = ""
    #: why it is not grounded ("" when it is)
    reason: str = ""


def classify(reply: str, positive: int, count: int, language: str = "en") -> Grounding:
    """Judge ``reply`` for a prompt of ``count`` documents whose positive is at ``positive``
    (0-based), labelled in ``language``."""
    answer, _ = final_answer(reply)
    cited = cited_labels(answer, count, language)
    wanted = label(positive, language)
    if not cited:
        return Grounding(False, cited, answer, "the final answer cites no document")
    if wanted not in cited:
        return Grounding(False, cited, answer,
                         f"the final answer cites {', '.join(cited)}, not the positive {wanted}")
    if count > 1 and len(cited) == count:
        return Grounding(False, cited, answer, "the final answer cites every document")
    return Grounding(True, cited, answer)


_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’–—"})


def normalise(text: str) -> str:
    """Lower case, citations and punctuation dropped, whitespace collapsed."""
    text = _CITE_ZH.sub(" ", _CITE.sub(" ", text))
    return " ".join(text.lower().translate(_PUNCT).split())


def answers_match(answer: str, gold: str) -> bool:
    """True when the final ``answer`` says the ``gold`` answer.

    Both are normalised (:func:`normalise`). A one-word gold answer (an option letter, a
    number, yes/no) must be the answer's first word; a longer one must appear in the answer
    as whole words.
    """
    got, want = normalise(answer), normalise(gold)
    if not want or not got:
        return False
    if got == want:
        return True
    if " " not in want:
        return got.split()[0] == want
    return f" {want} " in f" {got} "


def resolve_checker(checker: AnswerChecker | str | None) -> AnswerChecker:
    """A checker from a callable, a ``"module:function"`` name, or None (the default)."""
    if checker is None:
        return answers_match
    if callable(checker):
        return checker
    module, sep, name = str(checker).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"answer_checker must be 'module:function', got {checker!r}")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"answer_checker {checker!r} cannot be imported: {exc}") from None
    if not callable(func):
        raise ValueError(f"answer_checker {checker!r} is not callable")
    return func  # type: ignore[no-any-return]
