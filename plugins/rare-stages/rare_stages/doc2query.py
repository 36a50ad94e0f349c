"""Doc2Query: a reasoning-intensive question and a scenario for every document."""

from __future__ import annotations

import logging

from rare import ChatRequest, Completion, LLMServing, Operator, StepContext
from rare.formats import Records
from rare_stages.common import Tally, generate_with_retries, parse_json_object
from rare_stages.prompts import (
    DOC2QUERY_SCHEMA,
    DOC2QUERY_SCHEMA_PATTERNS,
    DOC2QUERY_SYSTEM,
    DOC2QUERY_USER,
)

log = logging.getLogger(__name__)

#: tokens kept free for the reply
REPLY_TOKENS = 600


def parse_query(completion: Completion) -> tuple[str, str]:
    """(question, scenario) from a reply, or ValueError naming what is wrong."""
    try:
        obj = parse_json_object(completion.text or "")
    except ValueError as exc:
        if completion.finish_reason == "length":
            raise ValueError(f"truncated (finish_reason=length): {exc}") from None
        raise
    fields = {str(k).strip().lower(): v for k, v in obj.items()}
    out = []
    for key in ("question", "scenario"):
        value = fields.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"field {key!r} is missing or empty")
        out.append(value.strip())
    return out[0], out[1]


def default_serving(llm_serving: LLMServing | None) -> LLMServing:
    if llm_serving is not None:
        return llm_serving
    import rare.serving

    return rare.serving.create()


class Doc2Query(Operator):
    """Writes one standalone, reasoning-intensive ``question`` and a ``scenario`` per row.

    Rows whose reply cannot be parsed are asked again, up to ``max_attempts`` times in all;
    a row that still fails keeps None in both columns, its reason in ``doc2query_error`` and
    the last raw reply in ``doc2query_raw``. Documents longer than ``max_doc_tokens``
    (default: what the serving's context leaves) are cut and ``doc2query_truncated`` says so.
    """

    def __init__(self, llm_serving: LLMServing | None = None, max_attempts: int = 3,
                 max_doc_tokens: int | None = None, seed: int = 0,
                 patterns: bool = True) -> None:
        super().__init__()
        #: whether the reply's schema carries the patterns of a real question and scenario
        #: (``DOC2QUERY_SCHEMA_PATTERNS``); False sends the plain schema
        self.schema = DOC2QUERY_SCHEMA_PATTERNS if patterns else DOC2QUERY_SCHEMA
        self._owns_serving = llm_serving is None
        self.llm_serving = default_serving(llm_serving)
        self.max_attempts = max_attempts
        self.max_doc_tokens = max_doc_tokens
        self.seed = seed
        self.configure()

    def configure(self, input_key: str = "text", output_question_key: str = "question",
                  output_scenario_key: str = "scenario",
                  max_attempts: int | None = None) -> None:
        """Per-run settings, as the reference's ``run()`` took them."""
        self.input_key = input_key
        self.output_question_key = output_question_key
        self.output_scenario_key = output_scenario_key
        self.attempts_allowed = self.max_attempts if max_attempts is None else max_attempts
        if self.attempts_allowed < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.attempts_allowed}")

    def input_columns(self) -> list[str]:
        return [self.input_key]

    def output_columns(self) -> list[str]:
        return [self.output_question_key, self.output_scenario_key]

    def doc_budget(self) -> int:
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        serving = self.llm_serving
        overhead = serving.count_tokens(DOC2QUERY_SYSTEM + DOC2QUERY_USER) + 32
        return max(64, serving.context_window - overhead - REPLY_TOKENS)

    def build_request(self, document: str, attempt: int) -> ChatRequest:
        return ChatRequest.from_prompt(
            DOC2QUERY_USER.format(document=document), system=DOC2QUERY_SYSTEM,
            json_schema=self.schema, max_tokens=REPLY_TOKENS,
            seed=self.seed + attempt,
        )

    def open(self, ctx: StepContext) -> None:
        super().open(ctx)
        self.tally = Tally(self.llm_serving)
        self.budget = self.doc_budget()

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        texts, problems = self.text_values(rows, self.input_key, ctx)
        self.warn_problems(problems, "have no text and are marked failed")
        documents: dict[int, str] = {}
        truncated = [False] * len(rows)
        for i, text in enumerate(texts):
            if text is not None:
                documents[i], truncated[i] = self.llm_serving.truncate(text, self.budget)
        values, failures, attempts = generate_with_retries(
            self.llm_serving, lambda i, a: self.build_request(documents[i], a),
            list(documents), parse_query, self.attempts_allowed, desc="Doc2Query",
            journal=ctx.journal,
        )
        failed = 0
        for i, row in enumerate(rows):
            question = scenario = error = raw = None
            if i in values:
                question, scenario = values[i]
            elif i in failures:
                error, raw = failures[i]
            else:
                error = problems[i]
            failed += error is not None
            row[self.output_question_key] = question
            row[self.output_scenario_key] = scenario
            row["doc2query_error"] = error
            row["doc2query_raw"] = raw
            row["doc2query_attempts"] = attempts.get(i, 0)
            row["doc2query_truncated"] = truncated[i]
        if any(truncated):
            log.warning("%d document(s) were longer than %d tokens and were cut to fit the "
                        "serving's context (column doc2query_truncated)", sum(truncated),
                        self.budget)
        self.stats = self.tally.add(failed=failed, truncated=sum(truncated))
        return rows

    def close(self) -> None:
        if self._owns_serving:
            self.llm_serving.close()


RAREDoc2QueryGenerator = Doc2Query
