"""The local runner: each step read once, in batches, with the same rows whatever the batch
size; operators of the reference's style (their own run() doing I/O) still run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServer

import rare.formats
from rare import FileStorage
from rare.pipeline import Pipeline, Step, rare_steps
from rare.storage import read_records, write_records

TEXT = "contents"


@pytest.fixture(scope="module")
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture()
def docs(tmp_path) -> Path:
    rows = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))
    rows[3][TEXT] = "   "  # a row with no text: marked, not dropped
    path = tmp_path / "docs.jsonl"
    write_records(path, rows)
    return path


def serving(url: str) -> Any:
    from rare.serving import APILLMServing_request

    llm = APILLMServing_request(api_url=url, model_name="runner-test", max_workers=4,
                                max_retries=1, timeout=10)
    llm.use_cache(False)
    return llm


@pytest.fixture()
def wordcount(monkeypatch):
    """tests/plugins/rare-wordcount, unchanged, registered as pip would make it appear."""
    from rare.plugins import pm

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins" / "rare-wordcount"))
    import rare_wordcount

    if pm.get_plugin("wordcount") is None:
        pm.register(rare_wordcount, name="wordcount")
    yield rare_wordcount.WordCount
    pm.unregister(name="wordcount")


def count_reads(monkeypatch) -> Counter[str]:
    reads: Counter[str] = Counter()
    real = rare.formats.open_data

    def counted(path):  # noqa: ANN001, ANN202
        reads[Path(path).name] += 1
        return real(path)

    monkeypatch.setattr(rare.formats, "open_data", counted)
    return reads


def run(server, docs: Path, work: Path, batch_size: int | None = None,
        steps: list[Step] | None = None) -> Any:
    llm = serving(server.chat_url)
    try:
        return Pipeline(steps or rare_steps(TEXT, num_neg=2), serving=llm, retriever="gensim",
                        batch_size=batch_size).run(docs, work / "out.jsonl",
                                                   cache_path=work / "cache")
    finally:
        llm.close()


def test_three_stages_read_the_input_and_each_step_once(server, docs, tmp_path,
                                                         monkeypatch) -> None:
    reads = count_reads(monkeypatch)
    report = run(server, docs, tmp_path, batch_size=3)
    # step 3 is never read back: the output is written as its batches go by
    assert reads == Counter({"docs.jsonl": 1, "rare_cache_step_step1.jsonl": 1,
                             "rare_cache_step_step2.jsonl": 1})
    assert report.rows_in == report.rows_out == 10
    out = read_records(tmp_path / "out.jsonl")
    assert out == read_records(tmp_path / "cache" / "rare_cache_step_step3.jsonl")
    assert report.failed_rows == 1 and sum(report.row_failures.values()) == 1


def test_batch_size_does_not_change_the_rows(server, docs, tmp_path) -> None:
    small = run(server, docs, tmp_path / "small", batch_size=3)
    whole = run(server, docs, tmp_path / "whole", batch_size=1000)
    a = read_records(tmp_path / "small" / "out.jsonl")
    b = read_records(tmp_path / "whole" / "out.jsonl")
    assert len(a) == 10
    # the same rows (the step files named in the skipped rows' reasons differ by folder)
    assert json.dumps(a).replace("/small/", "/X/") == json.dumps(b).replace("/whole/", "/X/")
    # the row without text is named by its index in the file, whatever the batch
    assert a[3]["doc2query_error"].endswith("row 3: field 'contents' is empty")
    assert a[3]["hard_negatives"] is None and a[3]["reasoning"] is None
    assert small.failed_rows == whole.failed_rows == 1
    for row in a[:3] + a[4:]:
        assert row["doc2query_error"] is None and len(row["hard_negatives"]) == 2
        assert all(isinstance(t, str) and t for t in row["hard_negatives"])


def test_reference_style_operator_runs_in_a_pipeline(server, docs, tmp_path,
                                                      wordcount) -> None:
    # tests/plugins/rare-wordcount, unchanged: its run() reads and writes the storage itself
    steps = [Step("WordCount", run={"input_key": TEXT}), *rare_steps(TEXT, num_neg=2)[:1]]
    report = run(server, docs, tmp_path, steps=steps)
    out = read_records(tmp_path / "out.jsonl")
    assert [r["word_count"] for r in out] == [len(str(r[TEXT]).split())
                                             for r in read_records(docs)]
    assert all("question" in r for r in out)
    assert report.stages[0].stats["rows_out"] == 10


def test_reference_style_operator_run_directly(docs, tmp_path, wordcount) -> None:
    from rare import FileStorage

    WordCount = wordcount  # noqa: N806
    storage = FileStorage(str(docs), cache_path=str(tmp_path / "cache"))
    WordCount().run(storage.step(), input_key=TEXT)
    rows = read_records(tmp_path / "cache" / "rare_cache_step_step1.jsonl")
    assert rows[0]["word_count"] == len(rows[0][TEXT].split())


def test_transform_operator_through_the_reference_api_in_dict_storage(tmp_path) -> None:
    """run(storage=...) accepts any object with the reference's read()/write()."""
    from rare.operators import BM25HardNeg

    rows = [json.loads(line) for line in
            shared("cacm", "cacm.jsonl").read_text().splitlines()[:40]]
    for r in rows:
        r["question"] = " ".join(r["contents"].split()[:8])

    class Memory:
        written: list[dict[str, Any]] = []

        def read(self, output_type: str = "dict") -> list[dict[str, Any]]:
            return [dict(r) for r in rows]

        def write(self, data: list[dict[str, Any]]) -> None:
            Memory.written = list(data)

    BM25HardNeg(retriever="gensim", num_neg=2).run(storage=Memory(), input_text_key="contents")
    assert len(Memory.written) == 40
    assert all(len(r["hard_negatives"]) == 2 for r in Memory.written)


def _question_rows(n: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in
            shared("cacm", "cacm.jsonl").read_text().splitlines()[:n]]
    for r in rows:
        r["question"] = " ".join(r["contents"].split()[:8])
    return rows


def test_bm25hardneg_closes_the_retriever_it_created_and_only_that(tmp_path) -> None:
    import rare.retrievers
    from rare.operators import BM25HardNeg

    path = tmp_path / "docs.jsonl"
    write_records(path, _question_rows(30))
    op = BM25HardNeg(retriever="gensim", num_neg=2)
    op.run(storage=FileStorage(str(path), cache_path=str(tmp_path / "a")).step(),
           input_text_key="contents")
    assert op.retriever is not None and op.retriever.closed
    mine = rare.retrievers.create("gensim")
    with mine:
        mine.index([f"row{i}" for i in range(30)], [r["contents"] for r in _question_rows(30)])
        mine.commit()
        passed = BM25HardNeg(retriever=mine, num_neg=2, index_rows=False)
        passed.run(storage=FileStorage(str(path), cache_path=str(tmp_path / "b")).step(),
                   input_text_key="contents")
        assert not mine.closed  # the caller's: left open
    assert mine.closed


def test_a_negative_without_stored_text_is_dropped_not_emptied(tmp_path) -> None:
    """A backend that cannot give a negative's text back: the row keeps the others and says
    what is missing; no negative is ever an empty string."""
    import rare.retrievers
    from rare.operators import BM25HardNeg

    class Forgetful(rare.retrievers.GensimRetriever):  # a real backend with one gap
        def get_texts(self, ids):  # noqa: ANN001, ANN201
            texts = super().get_texts(ids)
            return [None if doc_id == "row5" else t for doc_id, t in zip(ids, texts)]

    path = tmp_path / "docs.jsonl"
    write_records(path, _question_rows(30))
    op = BM25HardNeg(retriever=Forgetful(), num_neg=3)
    op.run(storage=FileStorage(str(path), cache_path=str(tmp_path / "c")).step(),
           input_text_key="contents")
    rows = read_records(tmp_path / "c" / "rare_cache_step_step1.jsonl")
    hit = [r for r in rows if r["hard_negatives_ids"] is not None and "row5" not in
           r["hard_negatives_ids"] and r["hardneg_error"] and "no stored text" in
           r["hardneg_error"]]
    assert hit, "some row should have lost row5 as a negative"
    for row in rows:
        assert all(isinstance(t, str) and t for t in row["hard_negatives"] or [])
        assert len(row["hard_negatives"] or []) == len(row["hard_negatives_ids"] or [])
