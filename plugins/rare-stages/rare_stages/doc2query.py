"""Doc2Query: a reasoning-intensive question and a scenario for every document."""

from __future__ import annotations

import logging

from rare import ChatRequest, Completion, LLMServing, Operator, StepContext
from rare.formats import Records
from rare.text import check_language
from rare_stages.common import Tally, generate_with_retries, reply_fields
from rare_stages.prompts import PROMPTS, document_language, prompts_for

log = logging.getLogger(__name__)

#: tokens kept free for the reply
REPLY_TOKENS = 600


def parse_query(completion: Completion) -> tuple[str, str]:
    """(question, scenario) from a reply, or ValueError naming what is wrong."""
    fields = reply_fields(completion)
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

    The question and scenario are asked for in the document's language: ``language="auto"``
    (the default) reads it from each document's script mix (Chinese documents get the
    Chinese prompts), ``"en"`` or ``"zh"`` sets it for every row; ``doc2query_language``
    records the language used.
    """

    def __init__(self, llm_serving: LLMServing | None = None, max_attempts: int = 3,
                 max_doc_tokens: int | None = None, seed: int = 0,
                 patterns: bool = True, language: str = "auto") -> None:
        super().__init__()
        self.language = check_language(language)
        #: whether the reply's schema carries the patterns of a real question and scenario
        #: (``DOC2QUERY_SCHEMA_PATTERNS`` in English); False sends the plain schema
        self.patterns = patterns
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

    def doc_budget(self, language: str = "en") -> int:
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        serving = self.llm_serving
        prompts = prompts_for(language)
        overhead = serving.count_tokens(prompts.doc2query_system + prompts.doc2query_user) + 32
        return max(64, serving.context_window - overhead - REPLY_TOKENS)

    def build_request(self, document: str, attempt: int, language: str = "en") -> ChatRequest:
        prompts = prompts_for(language)
        schema = prompts.doc2query_schema_patterns if self.patterns else prompts.doc2query_schema
        return ChatRequest.from_prompt(
            prompts.doc2query_user.format(document=document), system=prompts.doc2query_system,
            json_schema=schema, max_tokens=REPLY_TOKENS,
            seed=self.seed + attempt,
        )

    def open(self, ctx: StepContext) -> None:
        super().open(ctx)
        self.tally = Tally(self.llm_serving)
        self.budgets = {language: self.doc_budget(language) for language in PROMPTS}
        self.budget = min(self.budgets.values())

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        texts, problems = self.text_values(rows, self.input_key, ctx)
        self.warn_problems(problems, "have no text and are marked failed")
        documents: dict[int, str] = {}
        languages: list[str | None] = [None] * len(rows)
        truncated = [False] * len(rows)
        for i, text in enumerate(texts):
            if text is not None:
                language = languages[i] = document_language(text, self.language)
                documents[i], truncated[i] = self.llm_serving.truncate(
                    text, self.budgets[language])
        values, failures, attempts = generate_with_retries(
            self.llm_serving,
            lambda i, a: self.build_request(documents[i], a, languages[i] or "en"),
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
            row["doc2query_language"] = languages[i]
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
