"""ReasonDistill: step-by-step reasoning over the positive hidden among hard negatives.

With ``grounding`` on (the default) each reply is judged (:mod:`rare_stages.grounding`):
a reply whose final answer does not cite the positive's label, or that cites every
document, is asked again with another seed and ``sample_temperature``, up to
``max_samples`` replies per row, and the first grounded one is kept (rejection sampling,
as the RARE authors kept only reasoning that reached the right answer). When the rows carry
a gold answer (``input_answer_key``), a reply must also give that answer (a normalised
match by default; ``answer_checker`` replaces it).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from rare import ChatRequest, Completion, LLMServing, Operator, StepContext
from rare.formats import Records
from rare.text import check_language
from rare_stages.common import RETRYABLE_ERRORS, Tally, seeded_int
from rare_stages.doc2query import default_serving
from rare_stages.grounding import AnswerChecker, Grounding, classify, label, resolve_checker
from rare_stages.prompts import distill_messages, document_language, prompts_for

log = logging.getLogger(__name__)

#: tokens kept free for the reasoning
REPLY_TOKENS = 1024
#: temperature of the second and later samples of a row: the RARE repository's distillation
#: script (inference/vllm_infer_text.py) samples the teacher at temperature 0.95
SAMPLE_TEMPERATURE = 0.95
#: replies asked for per row at most when grounding (the RARE repository keeps up to 8)
MAX_SAMPLES = 4


def parse_reasoning(completion: Completion) -> tuple[str, str | None]:
    text = (completion.text or "").strip()
    if not text:
        raise ValueError("empty reply")
    if completion.finish_reason == "length":
        raise ValueError("truncated: the reply hit max_tokens (finish_reason=length)")
    return text, completion.finish_reason


@dataclass
class _Row:
    """One row's prompt and what its replies gave so far."""

    messages: list[dict[str, str]]
    position: int
    count: int
    gold: str | None
    language: str = "en"
    asked: int = 0
    unusable: int = 0
    kept: tuple[str, str | None, Grounding, bool | None] | None = None
    accepted: bool = False
    failure: tuple[str, str | None] | None = None


class ReasonDistill(Operator):
    """Asks the teacher for step-by-step reasoning over scenario, question and documents.

    The positive is put among the hard negatives by a shuffle seeded with ``seed`` and the
    row's own content, so a rerun gives the same order; ``reasoning_positive_index`` (0-based)
    and ``reasoning_positive_label`` record where it went, ``reasoning_documents`` the
    documents as the teacher saw them (in order, cut to the budget) and ``reasoning_order``
    where each came from (0: the positive, k: the k-th hard negative). Each document is cut to
    a token budget (``max_doc_tokens``, default: the serving's context shared among the
    documents); ``reasoning_truncated`` says whether any was cut. Rows whose earlier steps
    failed are skipped and ``reasoning_error`` says so.

    Grounding (see the module's doc): ``reasoning_grounded`` (None when ``grounding`` is off
    or there is no reply), ``reasoning_cited`` (the labels the final answer cites),
    ``reasoning_answer`` (the final answer), ``reasoning_answer_match`` (None without a gold
    answer) and ``reasoning_samples`` (replies asked for). An unusable reply (empty, cut
    off) is asked again too, at most ``max_attempts`` times.
    """

    def __init__(self, llm_serving: LLMServing | None = None, seed: int = 0,
                 max_doc_tokens: int | None = None, max_attempts: int = 2,
                 max_tokens: int | None = None, grounding: bool = True,
                 max_samples: int = MAX_SAMPLES,
                 sample_temperature: float = SAMPLE_TEMPERATURE,
                 answer_checker: AnswerChecker | str | None = None,
                 language: str = "auto") -> None:
        super().__init__()
        self.language = check_language(language)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self._owns_serving = llm_serving is None
        self.llm_serving = default_serving(llm_serving)
        self.seed = seed
        self.max_doc_tokens = max_doc_tokens
        self.max_attempts = max_attempts
        # the reply's length: ours, else the serving's, else REPLY_TOKENS
        self.max_tokens = max_tokens or self.llm_serving.max_tokens or REPLY_TOKENS
        self.grounding = grounding
        self.max_samples = max_samples
        self.sample_temperature = sample_temperature
        self.answer_checker = resolve_checker(answer_checker)
        self.configure()

    def configure(self, input_text_key: str = "text", input_question_key: str = "question",
                  input_scenario_key: str = "scenario",
                  input_hardneg_key: str = "hard_negatives",
                  output_key: str = "reasoning",
                  input_answer_key: str | None = None) -> None:
        """Per-run settings, as the reference's ``run()`` took them; ``input_answer_key``
        names a column of gold answers (rejection sampling then checks the answer too)."""
        self.input_text_key = input_text_key
        self.input_question_key = input_question_key
        self.input_scenario_key = input_scenario_key
        self.input_hardneg_key = input_hardneg_key
        self.output_key = output_key
        self.input_answer_key = input_answer_key

    def input_columns(self) -> list[str]:
        return [self.input_text_key, self.input_question_key, self.input_scenario_key,
                self.input_hardneg_key] + ([self.input_answer_key]
                                           if self.input_answer_key else [])

    def output_columns(self) -> list[str]:
        return [self.output_key]

    def doc_budget(self, count: int, language: str = "en") -> int:
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        serving = self.llm_serving
        prompts = prompts_for(language)
        overhead = serving.count_tokens(prompts.distill_system + prompts.distill_user) + 400
        return max(64, (serving.context_window - overhead - self.max_tokens) // max(1, count))

    def arrange(self, positive: str, negatives: list[str], key: str) -> tuple[list[str], int]:
        """Documents in a seeded random order, and the index where the positive landed."""
        docs, order = self.arrange_order(positive, negatives, key)
        return docs, order.index(0)

    def arrange_order(self, positive: str, negatives: list[str],
                      key: str) -> tuple[list[str], list[int]]:
        """Documents in a seeded random order, and where each came from (0: the positive)."""
        docs = [positive, *negatives]
        order = list(range(len(docs)))
        random.Random(seeded_int(self.seed, key)).shuffle(order)
        return [docs[j] for j in order], order

    def open(self, ctx: StepContext) -> None:
        super().open(ctx)
        self.tally = Tally(self.llm_serving)

    def shown_documents(self, text: str, question: str, negatives: list[str],
                        language: str = "en") -> tuple[list[str], list[int], bool]:
        """The documents as the teacher sees them (ordered, cut), their sources, and whether
        any was cut."""
        docs, order = self.arrange_order(text, negatives, f"{question}\x1f{text}")
        budget = self.doc_budget(len(docs), language)
        shown = []
        cut_any = False
        for doc in docs:
            cut, was_cut = self.llm_serving.truncate(doc, budget)
            cut_any |= was_cut
            shown.append(cut)
        return shown, order, cut_any

    def prompt_for(self, text: str, question: str, scenario: str, negatives: list[str],
                   language: str = "en") -> tuple[str, int, bool]:
        """The user prompt, where the positive landed, and whether a document was cut."""
        shown, order, cut_any = self.shown_documents(text, question, negatives, language)
        messages = distill_messages(scenario, question, shown, language)
        return messages[-1]["content"], order.index(0), cut_any

    def request(self, row: _Row, attempt: int) -> ChatRequest:
        """The ``attempt``-th request of a row: seed + attempt; from the second on, at the
        sampling temperature when grounding (the first uses the serving's own)."""
        temperature = self.sample_temperature if self.grounding and attempt else None
        return ChatRequest(messages=row.messages, max_tokens=self.max_tokens,
                           seed=self.seed + attempt, temperature=temperature)

    def judge(self, row: _Row, text: str) -> tuple[Grounding, bool | None, bool]:
        """The reply's grounding, its answer match (None without gold), and acceptance."""
        verdict = classify(text, row.position, row.count, row.language)
        match = None
        if row.gold is not None:
            match = bool(self.answer_checker(verdict.answer, row.gold))
        return verdict, match, verdict.grounded and match is not False

    def sample(self, rows: dict[int, _Row], ctx: StepContext) -> None:
        """Ask every row until it has an accepted reply or its budget is spent."""
        budget = self.max_samples if self.grounding else self.max_attempts
        pending = list(rows)
        attempt = 0
        while pending:
            desc = "ReasonDistill" if attempt == 0 else f"ReasonDistill (sample {attempt + 1})"
            completions = self.llm_serving.generate(
                [self.request(rows[i], attempt) for i in pending], desc=desc,
                journal=ctx.journal)
            still = []
            for i, completion in zip(pending, completions):
                row = rows[i]
                row.asked += 1
                again = self.take(row, completion)
                if again and row.unusable < self.max_attempts and row.asked < budget:
                    still.append(i)
            pending = still
            attempt += 1

    def take(self, row: _Row, completion: Completion) -> bool:
        """Record one reply; True when the row should be asked again."""
        if not completion.ok:
            row.failure = (completion.error or "call failed", completion.text)
            # The serving already retried what a retry can mend (timeouts, 429, 5xx);
            # only an empty reply is worth asking again with another seed.
            row.unusable += 1
            return (completion.error or "").startswith(RETRYABLE_ERRORS)
        try:
            text, finish = parse_reasoning(completion)
        except ValueError as exc:
            row.failure = (f"unusable reply: {exc}", completion.text)
            row.unusable += 1
            return True
        verdict, match, accepted = self.judge(row, text)
        if row.kept is None or (accepted and not row.accepted):
            row.kept = (text, finish, verdict, match)
            row.accepted = accepted
        return self.grounding and not accepted

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        texts, text_problems = self.text_values(rows, self.input_text_key, ctx)
        questions, _ = self.text_values(rows, self.input_question_key, ctx)
        scenarios, _ = self.text_values(rows, self.input_scenario_key, ctx)
        n = len(rows)
        errors: list[str | None] = [None] * n
        work: dict[int, _Row] = {}
        shown: list[list[str] | None] = [None] * n
        orders: list[list[int] | None] = [None] * n
        languages: list[str | None] = [None] * n
        truncated = [False] * n
        for i, row in enumerate(rows):
            negs = row.get(self.input_hardneg_key)
            text, question, scenario = texts[i], questions[i], scenarios[i]
            if text is None:
                errors[i] = f"skipped: {text_problems[i]}"
            elif question is None or scenario is None:
                errors[i] = "skipped: no question or scenario (an earlier step failed)"
            elif not isinstance(negs, list) or not all(isinstance(t, str) for t in negs):
                errors[i] = f"skipped: no {self.input_hardneg_key!r} (an earlier step failed)"
            else:
                language = languages[i] = document_language(text, self.language)
                docs, order, truncated[i] = self.shown_documents(text, question, negs, language)
                shown[i], orders[i] = docs, order
                work[i] = _Row(distill_messages(scenario, question, docs, language),
                               order.index(0), len(docs), self.gold_of(row), language)
        self.sample(work, ctx)
        grounded = judged = samples = 0
        for i, row in enumerate(rows):
            item = work.get(i)
            kept = item.kept if item is not None else None
            if item is not None and kept is None and item.failure is not None:
                errors[i] = item.failure[0]
            verdict = kept[2] if kept else None
            position = item.position if item is not None else None
            row[self.output_key] = kept[0] if kept else None
            row["reasoning_finish_reason"] = kept[1] if kept else None
            row["reasoning_positive_index"] = position
            row["reasoning_positive_label"] = (label(position, languages[i] or "en")
                                               if position is not None else None)
            row["reasoning_language"] = languages[i]
            row["reasoning_documents"] = shown[i]
            row["reasoning_order"] = orders[i]
            row["reasoning_truncated"] = truncated[i]
            row["reasoning_grounded"] = (verdict.grounded if verdict and self.grounding
                                         else None)
            row["reasoning_cited"] = verdict.cited if verdict else None
            row["reasoning_answer"] = verdict.answer if verdict else None
            row["reasoning_answer_match"] = kept[3] if kept else None
            row["reasoning_samples"] = item.asked if item is not None else 0
            row["reasoning_error"] = errors[i]
            row["reasoning_raw"] = (item.failure[1] if item is not None and kept is None
                                    and item.failure else None)
            if kept and self.grounding:
                judged += 1
                grounded += bool(item and item.accepted)
            samples += item.asked if item is not None else 0
        self.stats = self.tally.add(failed=sum(e is not None for e in errors),
                                    truncated=sum(truncated), judged=judged,
                                    grounded=grounded, samples=samples)
        return rows

    def gold_of(self, row: dict[str, Any]) -> str | None:
        if not self.input_answer_key:
            return None
        value = row.get(self.input_answer_key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return str(value)

    def close(self) -> None:
        stats = self.stats
        if self.grounding and stats.get("judged"):
            log.info("ReasonDistill: %d of %d replies grounded, %d samples", stats["grounded"],
                     stats["judged"], stats["samples"])
        if self._owns_serving:
            self.llm_serving.close()


RAREReasonDistillGenerator = ReasonDistill
