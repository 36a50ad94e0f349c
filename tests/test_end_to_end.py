"""The whole RARE pipeline on real models: the embedded one, and a real llama.cpp server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared
from llama_server import N_CTX

from rare.storage import read_records, write_records

pytestmark = pytest.mark.slow

# Small contexts keep a 2-core run to minutes; the budgets adapt to them.
REPLY = 512


def check_rows(rows: list[dict]) -> int:
    """Every row is complete or says why not; returns how many are complete.

    A 135M smoke-test model often rambles until max_tokens: such a reasoning is a failed
    row with a reason, which is what this checks, so few complete rows are required.
    """
    complete = 0
    for i, row in enumerate(rows):
        errors = {k: v for k, v in row.items() if k.endswith("_error") and v}
        if errors:
            # a failed row keeps what it had and says why
            assert all(isinstance(v, str) and v for v in errors.values()), (i, errors)
            if row.get("doc2query_error"):
                assert row["question"] is None and row["doc2query_raw"] is not None or \
                    row["doc2query_error"].startswith("empty input")
            continue
        assert row["question"].strip() and row["scenario"].strip(), i
        # a shortfall is a warning: the row goes on with the negatives that were found
        assert len(row["hard_negatives"]) == 3 - (row["hardneg_shortfall"] or 0), i
        assert bool(row["hardneg_shortfall"]) == bool(row["hardneg_warning"]), i
        assert row["text"] not in row["hard_negatives"], i
        assert row["reasoning"].strip(), i
        assert row["reasoning_positive_label"] == f"Document {row['reasoning_positive_index'] + 1}"
        complete += 1
    return complete


def test_reference_script_on_the_embedded_model(tmp_path: Path) -> None:
    # The reference's script, with only its imports changed.
    from rare import FileStorage
    from rare.operators import BM25HardNeg, Doc2Query, ReasonDistill
    from rare.serving import EmbeddedLLMServing

    storage = FileStorage(
        first_entry_file_name=str(shared("dataflow-examples", "pipeline_small_chunk.json")),
        cache_path=str(tmp_path / "cache"), file_name_prefix="rare_cache_step",
        cache_type="jsonl",
    )
    serving = EmbeddedLLMServing(n_ctx=N_CTX, max_tokens=REPLY)
    Doc2Query(serving).run(storage=storage.step(), input_key="text",
                           output_question_key="question", output_scenario_key="scenario",
                           max_attempts=3)
    BM25HardNeg().run(storage=storage.step(), input_question_key="question",
                      input_text_key="text", output_negatives_key="hard_negatives", num_neg=3)
    # grounding off: one reply per row, as the reference asked (rejection sampling has its
    # own tests, and four 135M replies per row would quadruple this test's time)
    ReasonDistill(serving, grounding=False).run(storage=storage.step(), input_text_key="text",
                               input_question_key="question", input_scenario_key="scenario",
                               input_hardneg_key="hard_negatives", output_key="reasoning")
    serving.close()
    rows = read_records(tmp_path / "cache" / "rare_cache_step_step3.jsonl")
    assert len(rows) == 10
    assert check_rows(rows) >= 2
    # under the grammar the small model's JSON is reliable
    assert sum(r["question"] is not None for r in rows) >= 8
    # Chunks are ~2,000 tokens; a 2,048-token context forces every document to be cut.
    assert all(r["doc2query_truncated"] for r in rows)
    assert all(r["reasoning_truncated"] for r in rows if r["reasoning"])
    assert serving.usage["prompt_tokens"] > 10 * 500


def test_pipeline_through_an_openai_compatible_server(tmp_path: Path, llama_server: str) -> None:
    from rare.pipeline import Pipeline, rare_steps
    from rare.serving import APILLMServing_request

    rows = json.loads(shared("dataflow-examples", "pipeline_small_chunk.json").read_text())
    write_records(tmp_path / "docs.jsonl", rows[:5])
    serving = APILLMServing_request(api_url=f"{llama_server}/chat/completions",
                                    model_name="smollm2", max_workers=2, max_tokens=REPLY,
                                    structured_output="json_object", context_window=N_CTX,
                                    seed=0, temperature=0.3)
    steps = rare_steps()
    steps[2].init["max_samples"] = 2  # a smoke model rarely grounds: keep the test short
    with serving:  # closes its HTTP session and event loop
        report = Pipeline(steps, serving=serving).run(
            tmp_path / "docs.jsonl", tmp_path / "out.parquet", cache_path=tmp_path / "cache")
    out = read_records(tmp_path / "out.parquet")
    assert report.rows_in == report.rows_out == len(out) == 5
    assert check_rows(out) >= 1
    assert sum(r["question"] is not None for r in out) >= 4
    assert report.usage["calls"] >= 10
    assert report.usage["prompt_tokens"] > 0 and report.usage["completion_tokens"] > 0
    assert [s.name for s in report.stages] == ["Doc2Query", "BM25HardNeg", "ReasonDistill"]


def test_cli_run_reports_a_summary(tmp_path: Path, llama_server: str) -> None:
    docs = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))[:4]
    write_records(tmp_path / "wiki.jsonl", docs)
    proc = subprocess.run(
        [sys.executable, "-m", "rare.cli", "run", "--input", str(tmp_path / "wiki.jsonl"),
         "--output", str(tmp_path / "out.csv"), "--api-url", f"{llama_server}/chat/completions",
         "--model", "smollm2", "-S", "structured_output=json_object", "-S", f"context_window={N_CTX}",
         "-S", f"max_tokens={REPLY}", "--retriever", "gensim", "--text-key", "contents",
         "--max-samples", "2",
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows in 4, rows out 4" in proc.stdout
    for stage in ("Doc2Query", "BM25HardNeg", "ReasonDistill"):
        assert stage in proc.stdout
    out = read_records(tmp_path / "out.csv")
    assert len(out) == 4 and all(isinstance(r["hard_negatives"], (list, type(None))) for r in out)
