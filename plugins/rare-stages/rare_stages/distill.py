"""ReasonDistill: step-by-step reasoning over the positive hidden among hard negatives."""

from __future__ import annotations

import random
from typing import Any

from rare import ChatRequest, Completion, LLMServing, Operator
from rare_stages.common import StageTimer, generate_with_retries, open_journal, seeded_int
from rare_stages.doc2query import default_serving
from rare_stages.prompts import DISTILL_SYSTEM, DISTILL_USER, DOCUMENT_BLOCK

#: tokens kept free for the reasoning
REPLY_TOKENS = 1024


def parse_reasoning(completion: Completion) -> tuple[str, str | None]:
    text = (completion.text or "").strip()
    if not text:
        raise ValueError("empty reply")
    if completion.finish_reason == "length":
        raise ValueError("truncated: the reply hit max_tokens (finish_reason=length)")
    return text, completion.finish_reason


class ReasonDistill(Operator):
    """Asks the teacher for step-by-step reasoning over scenario, question and documents.

    The positive is put among the hard negatives by a shuffle seeded with ``seed`` and the
    row's own content, so a rerun gives the same order; ``reasoning_positive_index`` (0-based)
    and ``reasoning_positive_label`` record where it went. Each document is cut to a token
    budget (``max_doc_tokens``, default: the serving's context shared among the documents);
    ``reasoning_truncated`` says whether any was cut. Rows whose earlier steps failed are
    skipped and ``reasoning_error`` says so.
    """

    def __init__(self, llm_serving: LLMServing | None = None, seed: int = 0,
                 max_doc_tokens: int | None = None, max_attempts: int = 2,
                 max_tokens: int | None = None) -> None:
        super().__init__()
        self.llm_serving = default_serving(llm_serving)
        self.seed = seed
        self.max_doc_tokens = max_doc_tokens
        self.max_attempts = max_attempts
        # the reply's length: ours, else the serving's, else REPLY_TOKENS
        self.max_tokens = max_tokens or self.llm_serving.max_tokens or REPLY_TOKENS

    def doc_budget(self, count: int) -> int:
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        serving = self.llm_serving
        overhead = serving.count_tokens(DISTILL_SYSTEM + DISTILL_USER) + 400  # question etc.
        return max(64, (serving.context_window - overhead - self.max_tokens) // max(1, count))

    def arrange(self, positive: str, negatives: list[str], key: str) -> tuple[list[str], int]:
        """Documents in a seeded random order, and the index where the positive landed."""
        docs = [positive, *negatives]
        order = list(range(len(docs)))
        random.Random(seeded_int(self.seed, key)).shuffle(order)
        return [docs[j] for j in order], order.index(0)

    def run(self, storage: Any, input_text_key: str = "text", input_question_key: str = "question",
            input_scenario_key: str = "scenario", input_hardneg_key: str = "hard_negatives",
            output_key: str = "reasoning", **_: Any) -> list[str]:
        timer = StageTimer(self.llm_serving)
        df, source = self.read_input(storage, [input_text_key, input_question_key,
                                               input_scenario_key, input_hardneg_key])
        if df is None:
            return [output_key]
        self.warn_existing(df, [output_key], source)
        texts, text_problems = self.text_column(df, input_text_key, source)
        questions, _ = self.text_column(df, input_question_key, source)
        scenarios, _ = self.text_column(df, input_scenario_key, source)
        hardnegs = df[input_hardneg_key].tolist()

        n = len(df)
        errors: list[str | None] = [None] * n
        prompts: dict[int, str] = {}
        positions: list[int | None] = [None] * n
        truncated = [False] * n
        for i in range(n):
            negs = hardnegs[i]
            if texts[i] is None:
                errors[i] = f"skipped: {text_problems[i]}"
            elif questions[i] is None or scenarios[i] is None:
                errors[i] = "skipped: no question or scenario (an earlier step failed)"
            elif not isinstance(negs, list):
                errors[i] = f"skipped: no {input_hardneg_key!r} (an earlier step failed)"
            if errors[i]:
                continue
            docs, positions[i] = self.arrange(texts[i], [str(t) for t in negs],
                                              f"{questions[i]}\x1f{texts[i]}")
            budget = self.doc_budget(len(docs))
            blocks = []
            for label, doc in enumerate(docs, start=1):
                cut, was_cut = self.llm_serving.truncate(doc, budget)
                truncated[i] |= was_cut
                blocks.append(DOCUMENT_BLOCK.format(label=label, text=cut))
            prompts[i] = DISTILL_USER.format(scenario=scenarios[i], question=questions[i],
                                             count=len(docs), documents="\n\n".join(blocks))

        journal = open_journal(storage)
        try:
            values, failures, _ = generate_with_retries(
                self.llm_serving,
                lambda i, a: ChatRequest.from_prompt(prompts[i], system=DISTILL_SYSTEM,
                                                     max_tokens=self.max_tokens,
                                                     seed=self.seed + a),
                list(prompts), parse_reasoning, self.max_attempts, desc="ReasonDistill",
                journal=journal,
            )
        finally:
            if journal is not None:
                journal.close()
        raws: list[str | None] = [None] * n
        for i, (reason, raw) in failures.items():
            errors[i], raws[i] = reason, raw
        df[output_key] = [values[i][0] if i in values else None for i in range(n)]
        df["reasoning_finish_reason"] = [values[i][1] if i in values else None for i in range(n)]
        df["reasoning_positive_index"] = positions
        df["reasoning_positive_label"] = [
            f"Document {p + 1}" if p is not None else None for p in positions
        ]
        df["reasoning_truncated"] = truncated
        df["reasoning_error"] = errors
        df["reasoning_raw"] = raws
        storage.write(df)
        self.stats = timer.finish(n, n, sum(e is not None for e in errors),
                                  truncated=sum(truncated))
        return [output_key]


RAREReasonDistillGenerator = ReasonDistill
