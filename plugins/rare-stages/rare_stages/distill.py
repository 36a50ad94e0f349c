"""ReasonDistill: step-by-step reasoning over the positive hidden among hard negatives."""

from __future__ import annotations

import random

from rare import ChatRequest, Completion, LLMServing, Operator, StepContext
from rare.formats import Records
from rare.text import check_language
from rare_stages.common import Tally, generate_with_retries, seeded_int
from rare_stages.doc2query import default_serving
from rare_stages.prompts import document_language, prompts_for

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

    The reasoning is asked for in the positive document's language (``language="auto"``,
    the default, reads it from the document's script mix; ``"en"`` or ``"zh"`` sets it);
    ``reasoning_language`` records it, and documents are labelled in it ("文档 2").
    """

    def __init__(self, llm_serving: LLMServing | None = None, seed: int = 0,
                 max_doc_tokens: int | None = None, max_attempts: int = 2,
                 max_tokens: int | None = None, language: str = "auto") -> None:
        super().__init__()
        self.language = check_language(language)
        self._owns_serving = llm_serving is None
        self.llm_serving = default_serving(llm_serving)
        self.seed = seed
        self.max_doc_tokens = max_doc_tokens
        self.max_attempts = max_attempts
        # the reply's length: ours, else the serving's, else REPLY_TOKENS
        self.max_tokens = max_tokens or self.llm_serving.max_tokens or REPLY_TOKENS
        self.configure()

    def configure(self, input_text_key: str = "text", input_question_key: str = "question",
                  input_scenario_key: str = "scenario",
                  input_hardneg_key: str = "hard_negatives",
                  output_key: str = "reasoning") -> None:
        """Per-run settings, as the reference's ``run()`` took them."""
        self.input_text_key = input_text_key
        self.input_question_key = input_question_key
        self.input_scenario_key = input_scenario_key
        self.input_hardneg_key = input_hardneg_key
        self.output_key = output_key

    def input_columns(self) -> list[str]:
        return [self.input_text_key, self.input_question_key, self.input_scenario_key,
                self.input_hardneg_key]

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
        docs = [positive, *negatives]
        order = list(range(len(docs)))
        random.Random(seeded_int(self.seed, key)).shuffle(order)
        return [docs[j] for j in order], order.index(0)

    def open(self, ctx: StepContext) -> None:
        super().open(ctx)
        self.tally = Tally(self.llm_serving)

    def prompt_for(self, text: str, question: str, scenario: str, negatives: list[str],
                   language: str = "en") -> tuple[str, int, bool]:
        """The user prompt, where the positive landed, and whether a document was cut."""
        prompts = prompts_for(language)
        docs, position = self.arrange(text, negatives, f"{question}\x1f{text}")
        budget = self.doc_budget(len(docs), language)
        blocks = []
        cut_any = False
        for label, doc in enumerate(docs, start=1):
            cut, was_cut = self.llm_serving.truncate(doc, budget)
            cut_any |= was_cut
            blocks.append(prompts.document_block.format(label=label, text=cut))
        prompt = prompts.distill_user.format(scenario=scenario, question=question,
                                             count=len(docs), documents="\n\n".join(blocks))
        return prompt, position, cut_any

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        texts, text_problems = self.text_values(rows, self.input_text_key, ctx)
        questions, _ = self.text_values(rows, self.input_question_key, ctx)
        scenarios, _ = self.text_values(rows, self.input_scenario_key, ctx)
        n = len(rows)
        errors: list[str | None] = [None] * n
        prompts: dict[int, str] = {}
        positions: list[int | None] = [None] * n
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
                prompts[i], positions[i], truncated[i] = self.prompt_for(
                    text, question, scenario, negs, language)
        values, failures, _ = generate_with_retries(
            self.llm_serving,
            lambda i, a: ChatRequest.from_prompt(
                prompts[i], system=prompts_for(languages[i] or "en").distill_system,
                max_tokens=self.max_tokens, seed=self.seed + a),
            list(prompts), parse_reasoning, self.max_attempts, desc="ReasonDistill",
            journal=ctx.journal,
        )
        raws: list[str | None] = [None] * n
        for i, (reason, raw) in failures.items():
            errors[i], raws[i] = reason, raw
        for i, row in enumerate(rows):
            position = positions[i]
            row[self.output_key] = values[i][0] if i in values else None
            row["reasoning_finish_reason"] = values[i][1] if i in values else None
            label = prompts_for(languages[i] or "en").document_label
            row["reasoning_positive_index"] = position
            row["reasoning_positive_label"] = (label.format(label=position + 1)
                                               if position is not None else None)
            row["reasoning_language"] = languages[i]
            row["reasoning_truncated"] = truncated[i]
            row["reasoning_error"] = errors[i]
            row["reasoning_raw"] = raws[i]
        self.stats = self.tally.add(failed=sum(e is not None for e in errors),
                                    truncated=sum(truncated))
        return rows

    def close(self) -> None:
        if self._owns_serving:
            self.llm_serving.close()


RAREReasonDistillGenerator = ReasonDistill
