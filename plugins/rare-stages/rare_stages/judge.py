"""The false-negative judge: the teacher says which mined negatives in fact answer the question.

A mined "negative" that answers the question teaches the student wrong reasoning (it is
told one document is right and the others are distractors). The judge asks the teacher,
for each question and candidate negative, whether that document alone holds what is needed
to answer; a candidate judged to answer is dropped and the next candidate (deeper in the
ranking, or next in the draw) is asked about instead, until ``num_neg`` are kept or the
candidates run out.

:class:`FalseNegativeJudge` is the logic (used by ``BM25HardNeg(judge=...)``);
:class:`NegativeJudge` is the operator that judges the negatives an earlier step mined.
As a control, the judge is also asked about the positive itself on a seeded sample of the
rows: every "no" there is a miss of the judge's (stats ``judge_control_no``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rare import ChatRequest, Completion, LLMServing, Operator, StepContext
from rare.errors import SettingsError
from rare.formats import Records
from rare.llm import Journal
from rare.text import check_language
from rare_stages.common import (
    Tally,
    generate_with_retries,
    reply_fields,
    seeded_int,
)
from rare_stages.prompts import JUDGE_SCHEMA, PROMPTS, document_language, prompts_for

log = logging.getLogger(__name__)

#: tokens kept for the verdict and its one-line reason
REPLY_TOKENS = 160
#: the reason kept in the row is cut to this many characters
MAX_REASON = 300
YES = ("yes", "true", "answers", "y")
NO = ("no", "false", "does not answer", "n")


def parse_verdict(completion: Completion) -> tuple[str, str]:
    """("yes" or "no", reason) from a reply; ValueError naming what is wrong."""
    fields = reply_fields(completion)
    raw = fields.get("verdict", fields.get("answer"))
    if isinstance(raw, bool):
        verdict = "yes" if raw else "no"
    elif isinstance(raw, str) and raw.strip().lower().rstrip(".") in YES + NO:
        verdict = "yes" if raw.strip().lower().rstrip(".") in YES else "no"
    else:
        raise ValueError(f"field 'verdict' must be \"yes\" or \"no\", got {raw!r}")
    reason = fields.get("reason")
    reason = reason.strip().splitlines()[0][:MAX_REASON] if isinstance(reason, str) and \
        reason.strip() else ""
    return verdict, reason


@dataclass
class Candidate:
    """A document the judge may be asked about."""

    id: str
    text: str
    score: float | None = None
    rank: int | None = None


@dataclass
class JudgeItem:
    """One row: its question, its candidates in order of preference, how many to keep."""

    question: str
    candidates: list[Candidate]
    num_neg: int
    positive: str | None = None  # asked about as a control when ``control`` is set
    control: bool = False
    #: the prompts' language, "en" or "zh"; None: the judge's ``language`` setting, with
    #: "auto" the language of the positive's text (else the question's)
    language: str | None = None


@dataclass
class JudgeOutcome:
    kept: list[Candidate] = field(default_factory=list)
    #: every candidate asked about, in the order asked: {"id", "verdict", "reason"};
    #: verdict "yes" (answers: dropped), "no" (kept) or None (the call failed: kept)
    judged: list[dict[str, Any]] = field(default_factory=list)
    #: the control question about the positive: {"verdict", "reason"}, else None
    control: dict[str, Any] | None = None

    @property
    def dropped(self) -> int:
        return sum(1 for j in self.judged if j["verdict"] == "yes")


class FalseNegativeJudge:
    """Asks ``serving`` whether each candidate answers its question; see the module's text.

    ``control_rate`` of the rows (chosen by a hash of ``seed`` and the row's question and
    positive, so a rerun picks the same ones) are also asked about their positive.
    Documents are cut to ``max_doc_tokens`` (default: what the serving's context leaves).
    The prompt is in the document's language: ``language`` ``"auto"`` (the default) picks
    it per row from the positive's text (else the question's), ``"en"`` or ``"zh"`` sets it.
    """

    def __init__(self, serving: LLMServing, seed: int = 0, max_attempts: int = 2,
                 max_doc_tokens: int | None = None, control_rate: float = 0.1,
                 language: str = "auto") -> None:
        if not 0 <= control_rate <= 1:
            raise SettingsError(f"control_rate must be in [0, 1], got {control_rate}")
        if max_attempts < 1:
            raise SettingsError(f"max_attempts must be >= 1, got {max_attempts}")
        self.serving = serving
        self.seed = seed
        self.max_attempts = max_attempts
        self.max_doc_tokens = max_doc_tokens
        self.control_rate = control_rate
        self.language = check_language(language)
        self._budgets: dict[str, int] = {}

    def is_control(self, question: str, positive: str) -> bool:
        """Whether this row is in the control sample (seeded, stable across runs)."""
        if self.control_rate <= 0:
            return False
        draw = seeded_int(self.seed, "judge-control", question, positive) % 1_000_000
        return draw < self.control_rate * 1_000_000

    def item_language(self, item: JudgeItem) -> str:
        """The language of an item's prompts (see :class:`JudgeItem`)."""
        if item.language in PROMPTS:
            return item.language
        return document_language(item.positive or item.question, self.language)

    def doc_budget(self, language: str = "en") -> int:
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        if language not in self._budgets:
            prompts = prompts_for(language)
            overhead = self.serving.count_tokens(prompts.judge_system + prompts.judge_user) \
                + 200  # the question
            self._budgets[language] = max(64, self.serving.context_window - overhead
                                          - REPLY_TOKENS)
        return self._budgets[language]

    def request(self, question: str, document: str, attempt: int,
                language: str = "en") -> ChatRequest:
        """The chat asking whether ``document`` answers ``question``, in ``language``."""
        prompts = prompts_for(language)
        cut, _ = self.serving.truncate(document, self.doc_budget(language))
        return ChatRequest.from_prompt(
            prompts.judge_user.format(question=question, document=cut),
            system=prompts.judge_system, json_schema=JUDGE_SCHEMA, max_tokens=REPLY_TOKENS,
            seed=self.seed + attempt,
        )

    def _builder(self, pairs: list[tuple[str, str, str]]
                 ) -> Callable[[int, int], ChatRequest]:
        """``build(n, attempt)`` for generate_with_retries: the request of question ``n``."""
        return lambda n, attempt: self.request(pairs[n][0], pairs[n][1], attempt, pairs[n][2])

    def judge(self, items: Sequence[JudgeItem], journal: Journal | None = None,
              desc: str = "NegativeJudge") -> list[JudgeOutcome]:
        """Judge every item's candidates in rounds: each round asks, for every item still
        short, about as many of its next candidates as it is missing."""
        outcomes = [JudgeOutcome() for _ in items]
        languages = [self.item_language(item) for item in items]
        kept_at: list[list[int]] = [[] for _ in items]
        next_at = [0] * len(items)
        # (item, candidate index or -1 for the control) of each question of a round
        asks: list[tuple[int, int]] = [(i, -1) for i, item in enumerate(items)
                                       if item.control and item.positive]
        rounds = 0
        while True:
            for i, item in enumerate(items):
                missing = item.num_neg - len(kept_at[i])
                take = item.candidates[next_at[i]:next_at[i] + max(0, missing)]
                asks.extend((i, next_at[i] + n) for n in range(len(take)))
                next_at[i] += len(take)
            if not asks:
                break
            rounds += 1

            pairs = [(items[i].question,
                      (items[i].positive if c < 0 else items[i].candidates[c].text) or "",
                      languages[i]) for i, c in asks]
            values, failures, _ = generate_with_retries(
                self.serving, self._builder(pairs),
                list(range(len(asks))), parse_verdict, self.max_attempts,
                desc=desc if rounds == 1 else f"{desc} (round {rounds})", journal=journal)
            for n, (i, c) in enumerate(asks):
                verdict, reason = values.get(n, (None, failures.get(n, ("no reply",))[0]))
                if c < 0:
                    outcomes[i].control = {"verdict": verdict, "reason": reason}
                    continue
                outcomes[i].judged.append({"id": items[i].candidates[c].id,
                                           "verdict": verdict, "reason": reason})
                if verdict != "yes":  # "no", or a failed call: not judged to answer
                    kept_at[i].append(c)
            asks = []
        for i, item in enumerate(items):
            outcomes[i].kept = [item.candidates[c] for c in sorted(kept_at[i])]
        return outcomes


    def judge_candidates(self, questions: Sequence[str], positives: Sequence[str | None],
                         candidates: Sequence[Sequence[tuple[str, str]]], num_neg: int,
                         journal: Journal | None = None, desc: str = "NegativeJudge"
                         ) -> tuple[list[list[str]], dict[str, int]]:
        """:meth:`judge` on plain values: for each question, its positive's text (None:
        no control) and its candidates as ``(id, text)`` in order of preference. Returns
        the ids kept for each question, and :func:`judge_stats`."""
        items = [JudgeItem(q, [Candidate(d, t) for d, t in cands], num_neg, pos,
                           bool(pos) and self.is_control(q, pos or ""))
                 for q, pos, cands in zip(questions, positives, candidates)]
        outcomes = self.judge(items, journal=journal, desc=desc)
        return [[c.id for c in o.kept] for o in outcomes], judge_stats(outcomes)


def judge_stats(outcomes: Sequence[JudgeOutcome]) -> dict[str, int]:
    """The counts a run summary shows: questions asked, negatives dropped, failed verdicts,
    control questions and the judge's misses on them."""
    judged = [j for o in outcomes for j in o.judged]
    controls = [o.control for o in outcomes if o.control is not None]
    return {
        "judge_calls": len(judged) + len(controls),
        "judge_dropped": sum(1 for j in judged if j["verdict"] == "yes"),
        "judge_failed": sum(1 for j in judged if j["verdict"] is None),
        "judge_control": sum(1 for c in controls if c["verdict"] is not None),
        "judge_control_no": sum(1 for c in controls if c["verdict"] == "no"),
    }


def default_serving(llm_serving: LLMServing | None) -> tuple[LLMServing, bool]:
    """The serving to judge with, and whether we created it (and so must close it)."""
    if llm_serving is not None:
        return llm_serving, False
    import rare.serving

    return rare.serving.create(), True


class NegativeJudge(Operator):
    """Drops mined negatives that the teacher judges to answer the question, and refills.

    Reads the question, the positive (``input_text_key``, asked about on a control sample),
    the negatives' texts and ids (and scores, when the column exists), and the candidates
    kept in reserve by ``BM25HardNeg(reserve=N)`` (column ``hardneg_reserve``: list of
    ``{"id", "text", "score", "rank"}``). Negatives judged to answer are dropped and the
    reserve fills their places, in order, until the row has as many as it came with
    (``num_neg``: that many, when set) or the reserve runs out. Writes the negatives back,
    ``hardneg_judged`` (each verdict: ``{"id", "verdict", "reason"}``), ``hardneg_control``
    (the control's verdict, else None) and updates ``hardneg_shortfall``. Calls go through
    ``llm_serving.generate`` with the step's journal: cached, journaled and resumable.
    The prompt is in each row's language (``language``: ``"auto"``, by the positive's text,
    else the question's; or ``"en"``, ``"zh"``).
    """

    def __init__(self, llm_serving: LLMServing | None = None, num_neg: int | None = None,
                 control_rate: float = 0.1, seed: int = 0, max_attempts: int = 2,
                 max_doc_tokens: int | None = None, language: str = "auto") -> None:
        super().__init__()
        self.llm_serving, self._owns_serving = default_serving(llm_serving)
        self.judge = FalseNegativeJudge(self.llm_serving, seed=seed, max_attempts=max_attempts,
                                        max_doc_tokens=max_doc_tokens,
                                        control_rate=control_rate, language=language)
        if num_neg is not None and num_neg < 1:
            raise SettingsError(f"num_neg must be >= 1, got {num_neg}")
        self.num_neg = num_neg
        self.configure()

    def configure(self, input_question_key: str = "question", input_text_key: str = "text",
                  input_negatives_key: str = "hard_negatives",
                  input_ids_key: str | None = None, input_scores_key: str | None = None,
                  input_reserve_key: str = "hardneg_reserve",
                  output_judged_key: str = "hardneg_judged") -> None:
        """Per-run settings: the columns read and written."""
        self.input_question_key = input_question_key
        self.input_text_key = input_text_key
        self.input_negatives_key = input_negatives_key
        self.input_ids_key = input_ids_key or f"{input_negatives_key}_ids"
        self.input_scores_key = input_scores_key or f"{input_negatives_key}_scores"
        self.input_reserve_key = input_reserve_key
        self.output_judged_key = output_judged_key

    def input_columns(self) -> list[str]:
        return [self.input_question_key, self.input_negatives_key, self.input_ids_key]

    def output_columns(self) -> list[str]:
        return [self.input_negatives_key, self.input_ids_key, self.output_judged_key,
                "hardneg_control", "hardneg_shortfall"]

    def open(self, ctx: StepContext) -> None:
        super().open(ctx)
        self.tally = Tally(self.llm_serving)

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        questions, _ = self.text_values(rows, self.input_question_key, ctx)
        items: dict[int, JudgeItem] = {}
        for i, row in enumerate(rows):
            texts, ids = row.get(self.input_negatives_key), row.get(self.input_ids_key)
            question = questions[i]
            if question is None or not isinstance(texts, list) or not isinstance(ids, list):
                continue
            scores = row.get(self.input_scores_key)
            scores = scores if isinstance(scores, list) and len(scores) == len(ids) else \
                [None] * len(ids)
            cands = [Candidate(str(d), str(t), s) for d, t, s in zip(ids, texts, scores)]
            for extra in row.get(self.input_reserve_key) or []:
                if isinstance(extra, dict) and isinstance(extra.get("text"), str):
                    cands.append(Candidate(str(extra.get("id")), extra["text"],
                                           extra.get("score"), extra.get("rank")))
            positive = row.get(self.input_text_key)
            positive = positive if isinstance(positive, str) and positive.strip() else None
            items[i] = JudgeItem(question, cands, self.num_neg or len(ids), positive,
                                 positive is not None and self.judge.is_control(question,
                                                                                positive))
        order = list(items)
        outcomes = dict(zip(order, self.judge.judge([items[i] for i in order],
                                                    journal=ctx.journal)))
        for i, row in enumerate(rows):
            outcome = outcomes.get(i)
            if outcome is None:
                row.setdefault(self.output_judged_key, None)
                row.setdefault("hardneg_control", None)
                continue
            row[self.input_negatives_key] = [c.text for c in outcome.kept]
            row[self.input_ids_key] = [c.id for c in outcome.kept]
            if self.input_scores_key in row:
                row[self.input_scores_key] = [c.score for c in outcome.kept]
            row[self.output_judged_key] = outcome.judged
            row["hardneg_control"] = outcome.control
            row["hardneg_shortfall"] = items[i].num_neg - len(outcome.kept)
        counts = judge_stats(list(outcomes.values()))
        self.stats = self.tally.add(
            failed=0, short=sum(1 for i, o in outcomes.items()
                                if len(o.kept) < items[i].num_neg), **counts)
        return rows

    def close(self) -> None:
        if self._owns_serving:
            self.llm_serving.close()
