"""Doc2Query: a reasoning-intensive question and a scenario for every document."""

from __future__ import annotations

import logging
from typing import Any

from rare import ChatRequest, Completion, LLMServing, Operator
from rare_stages.common import StageTimer, generate_with_retries, open_journal, parse_json_object
from rare_stages.prompts import DOC2QUERY_SCHEMA, DOC2QUERY_SYSTEM, DOC2QUERY_USER

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
                 max_doc_tokens: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.llm_serving = default_serving(llm_serving)
        self.max_attempts = max_attempts
        self.max_doc_tokens = max_doc_tokens
        self.seed = seed

    def doc_budget(self) -> int:
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        serving = self.llm_serving
        overhead = serving.count_tokens(DOC2QUERY_SYSTEM + DOC2QUERY_USER) + 32
        return max(64, serving.context_window - overhead - REPLY_TOKENS)

    def build_request(self, document: str, attempt: int) -> ChatRequest:
        return ChatRequest.from_prompt(
            DOC2QUERY_USER.format(document=document), system=DOC2QUERY_SYSTEM,
            json_schema=DOC2QUERY_SCHEMA, max_tokens=REPLY_TOKENS,
            seed=self.seed + attempt,
        )

    def run(self, storage: Any, input_key: str = "text", output_question_key: str = "question",
            output_scenario_key: str = "scenario", max_attempts: int | None = None,
            **_: Any) -> list[str]:
        timer = StageTimer(self.llm_serving)
        attempts_allowed = max_attempts if max_attempts is not None else self.max_attempts
        df, source = self.read_input(storage, [input_key])
        if df is None:
            return [output_question_key, output_scenario_key]
        texts, problems = self.text_column(df, input_key, source)
        self.warn_problems(problems, "have no text and are marked failed")
        self.warn_existing(df, [output_question_key, output_scenario_key], source)

        budget = self.doc_budget()
        documents: dict[int, str] = {}
        truncated = [False] * len(df)
        for i, text in enumerate(texts):
            if text is not None:
                documents[i], truncated[i] = self.llm_serving.truncate(text, budget)

        journal = open_journal(storage)
        try:
            values, failures, attempts = generate_with_retries(
                self.llm_serving, lambda i, a: self.build_request(documents[i], a),
                list(documents), parse_query, attempts_allowed, desc="Doc2Query",
                journal=journal,
            )
        finally:
            if journal is not None:
                journal.close()
        questions: list[str | None] = [None] * len(df)
        scenarios: list[str | None] = [None] * len(df)
        errors: list[str | None] = [None] * len(df)
        raws: list[str | None] = [None] * len(df)
        for i in range(len(df)):
            if i in values:
                questions[i], scenarios[i] = values[i]
            elif i in failures:
                errors[i], raws[i] = failures[i]
            else:
                errors[i] = problems[i]
        df[output_question_key] = questions
        df[output_scenario_key] = scenarios
        df["doc2query_error"] = errors
        df["doc2query_raw"] = raws
        df["doc2query_attempts"] = [attempts.get(i, 0) for i in range(len(df))]
        df["doc2query_truncated"] = truncated
        if any(truncated):
            log.warning("%d document(s) were longer than %d tokens and were cut to fit the "
                        "serving's context (column doc2query_truncated)", sum(truncated), budget)
        storage.write(df)
        self.stats = timer.finish(len(df), len(df), sum(e is not None for e in errors),
                                  truncated=sum(truncated))
        return [output_question_key, output_scenario_key]


RAREDoc2QueryGenerator = Doc2Query
