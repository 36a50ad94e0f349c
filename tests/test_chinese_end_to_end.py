"""The three RARE stages on Chinese documents (cmrc2018 paragraphs), on the embedded model and
through a real llama.cpp server: the prompts sent are the Chinese ones, BM25HardNeg mines
with the Chinese analyzer, and every row is complete or says why not.

Kept short: four short paragraphs (each row's negatives are the other three), one attempt
per row, a small context and short replies; the 135M smoke-test model writes poor Chinese,
so rows may fail, and each must then say why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from zh_data import load

from rare.storage import read_records, write_records

pytestmark = pytest.mark.slow

N_CTX = 2048
REPLY = 160
ROWS = 4


def chinese_rows() -> list[dict[str, str]]:
    """The first four short cmrc2018 paragraphs."""
    data = load("cmrc2018")
    short = [(i, t) for i, t in zip(data.ids, data.texts, strict=True) if len(t) <= 300]
    return [{"id": doc_id, "text": text} for doc_id, text in short[:ROWS]]


def spy_on(serving: Any) -> list[Any]:
    """Record every request the stages send through ``serving.generate``."""
    sent: list[Any] = []
    generate = serving.generate

    def recording(requests: Any, *args: Any, **kwargs: Any) -> Any:
        sent.extend(requests)
        return generate(requests, *args, **kwargs)

    serving.generate = recording
    return sent


def check_chinese_run(rows: list[dict[str, Any]], sent: list[Any], report: Any) -> None:
    from rare_stages.prompts import (
        DISTILL_SYSTEM_ZH,
        DOC2QUERY_SCHEMA_ZH_PATTERNS,
        DOC2QUERY_SYSTEM_ZH,
        DOC2QUERY_USER_ZH,
    )

    assert len(rows) == ROWS
    systems = [r.messages[0]["content"] for r in sent]
    doc2query = [r for r, s in zip(sent, systems, strict=True) if s == DOC2QUERY_SYSTEM_ZH]
    distill = [r for r, s in zip(sent, systems, strict=True) if s == DISTILL_SYSTEM_ZH]
    # every request is one of the Chinese prompts: none went out in English
    assert len(doc2query) + len(distill) == len(sent)
    assert len(doc2query) == len(rows)  # one attempt each
    head = DOC2QUERY_USER_ZH.split("\n", 1)[0]
    assert all(r.messages[1]["content"].startswith(head) for r in doc2query)
    assert all(r.json_schema == DOC2QUERY_SCHEMA_ZH_PATTERNS for r in doc2query)
    assert all("[文档 1]" in r.messages[1]["content"] for r in distill)
    for i, row in enumerate(rows):
        assert row["doc2query_language"] == "zh", i
        errors = {k: v for k, v in row.items() if k.endswith("_error") and v}
        if errors:  # a failed row says why, and keeps None rather than an empty string
            assert all(isinstance(v, str) and v for v in errors.values()), (i, errors)
            continue
        assert row["question"].strip() and row["scenario"].strip(), i
        assert len(row["hard_negatives"]) == ROWS - 1
        assert row["text"] not in row["hard_negatives"]
        assert row["reasoning"].strip() and row["reasoning_language"] == "zh", i
        assert row["reasoning_positive_label"] == f"文档 {row['reasoning_positive_index'] + 1}"
    mined = [r for r in rows if r.get("hard_negatives") is not None]
    assert mined, "no row reached BM25HardNeg"
    stats = {stage.name: stage.stats for stage in report.stages}
    assert stats["BM25HardNeg"]["language"] == "zh"  # auto picked it from the rows


def run_pipeline(tmp_path: Path, serving: Any) -> tuple[list[dict[str, Any]], Any]:
    from rare.pipeline import Pipeline, rare_steps

    write_records(tmp_path / "docs.jsonl", chinese_rows())
    steps = rare_steps(num_neg=ROWS - 1)
    steps[0].init.update(max_attempts=1, max_doc_tokens=200)
    steps[1].run["input_id_key"] = "id"
    steps[2].init.update(max_attempts=1, max_doc_tokens=96, max_tokens=REPLY)
    report = Pipeline(steps, serving=serving, language="auto").run(
        tmp_path / "docs.jsonl", tmp_path / "out.jsonl", cache_path=tmp_path / "cache")
    return read_records(tmp_path / "out.jsonl"), report


def test_chinese_documents_on_the_embedded_model(tmp_path: Path) -> None:
    from rare.serving import EmbeddedLLMServing

    serving = EmbeddedLLMServing(n_ctx=N_CTX, max_tokens=REPLY)
    sent = spy_on(serving)
    try:
        rows, report = run_pipeline(tmp_path, serving)
    finally:
        serving.close()
    check_chinese_run(rows, sent, report)
    # under the grammar the small model's JSON is reliable, in Chinese too
    assert sum(r["question"] is not None for r in rows) >= ROWS - 1


def test_chinese_documents_through_a_llama_cpp_server(tmp_path: Path,
                                                      llama_server: str) -> None:
    from rare.serving import APILLMServing_request

    serving = APILLMServing_request(api_url=f"{llama_server}/chat/completions",
                                    model_name="smollm2", max_workers=2, max_tokens=REPLY,
                                    structured_output="json_object", context_window=N_CTX,
                                    seed=0, temperature=0.3)
    sent = spy_on(serving)
    try:
        rows, report = run_pipeline(tmp_path, serving)
    finally:
        serving.close()
    check_chinese_run(rows, sent, report)
    assert report.usage["calls"] >= len(rows)
