"""``rare export``: every format from a real pipeline run, read back by ``datasets``.

The run is ``rare run`` against the fault server (deterministic replies that cite the
positive), with one row whose reasoning is never grounded and one whose Doc2Query always
fails, so the exports must leave out two rows and say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServer, scenario_marker

from rare.storage import read_records, write_records

TEXT = "contents"
VAL = 0.25  # of the 8 kept rows: 2 for validation


def rare(*args: str, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rare.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    """A finished run: its output file, rows, and the fault server's call log."""
    docs = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))
    work = tmp_path_factory.mktemp("run")
    write_records(work / "docs.jsonl", docs)
    ungrounded, failed = docs[5], docs[7]
    rules = [
        {"fault": "ungrounded", "kind": "distill",
         "match": "Scenario: " + scenario_marker(ungrounded[TEXT])},
        {"fault": "useless", "kind": "doc2query", "match": failed[TEXT][:200]},
    ]
    with FaultServer(rules) as server:
        proc = rare("run", "--input", str(work / "docs.jsonl"), "--output",
                    str(work / "out.jsonl"), "--api-url", server.chat_url, "--model",
                    "export-test", "-S", "max_workers=4", "--retriever", "gensim",
                    "--text-key", TEXT, "--num-neg", "2", "--max-samples", "2",
                    "--cache-dir", str(work / "cache"), "--no-cache")
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = server.stats()["log"]
    rows = read_records(work / "out.jsonl")
    assert len(rows) == 10
    assert "ReasonDistill: grounded 8 of 9 (89%), samples 10" in proc.stdout
    return {"out": work / "out.jsonl", "rows": rows, "log": log, "work": work,
            "ungrounded": ungrounded["id"], "failed": failed["id"]}


def export(run: dict[str, Any], fmt: str, tmp_path: Path, *extra: str) -> tuple[
        Path, subprocess.CompletedProcess[str]]:
    out = tmp_path / fmt
    proc = rare("export", str(run["out"]), "--format", fmt, "--out", str(out),
                "--val-fraction", str(VAL), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def kept_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in run["rows"] if r["id"] not in (run["ungrounded"], run["failed"])]


def load_json(*files: Path) -> Any:
    import datasets

    return datasets.load_dataset("json", data_files=[str(f) for f in files], split="train")


def test_run_writes_its_settings_beside_the_output(run) -> None:
    info = json.loads(Path(str(run["out"]) + ".run.json").read_text())
    assert info["teacher"]["model"] == "export-test"
    assert [s["operator"] for s in info["steps"]] == ["Doc2Query", "BM25HardNeg",
                                                      "ReasonDistill"]
    assert info["steps"][2]["init"]["max_samples"] == 2
    assert info["report"]["rows_out"] == 10 and info["report"]["failed_rows"] == 1


@pytest.mark.parametrize("fmt,columns", [
    ("sharegpt", {"conversations", "system"}),
    ("alpaca", {"instruction", "input", "output", "system"}),
    ("chat", {"messages"}),
])
def test_reasoning_formats_read_back(run, tmp_path, fmt, columns) -> None:
    out, proc = export(run, fmt, tmp_path)
    ext = "jsonl" if fmt == "chat" else "json"
    train, val = load_json(out / f"train.{ext}"), load_json(out / f"validation.{ext}")
    assert set(train.column_names) == columns == set(val.column_names)
    assert (len(train), len(val)) == (6, 2)
    assert "rows 10, kept 8 (train 6, validation 2)" in proc.stdout
    assert "left out: failed: unusable reply: 1, ungrounded: 1" in proc.stdout
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["left_out"] == {"failed: unusable reply": 1, "ungrounded": 1}
    assert manifest["splits"] == {"train": 6, "validation": 2}


def test_llamafactory_entries_match_the_files(run, tmp_path) -> None:
    for fmt in ("sharegpt", "alpaca"):
        out, _ = export(run, fmt, tmp_path, "--name", "rare_demo")
        info = json.loads((out / "dataset_info.json").read_text())
        assert set(info) == {"rare_demo", "rare_demo_validation"}
        for entry in info.values():
            assert entry["formatting"] == fmt
            records = json.loads((out / entry["file_name"]).read_text())
            assert records
            for record in records:
                # every column the entry names is a field of every record
                assert set(entry["columns"].values()) <= set(record)
                if fmt == "sharegpt":
                    tags = entry["tags"]
                    turns = record[entry["columns"]["messages"]]
                    assert [t[tags["role_tag"]] for t in turns] == [tags["user_tag"],
                                                                   tags["assistant_tag"]]
                    assert all(t[tags["content_tag"]] for t in turns)


def test_chat_messages_are_what_the_teacher_saw(run, tmp_path) -> None:
    out, _ = export(run, "chat", tmp_path)
    records = [json.loads(line) for f in ("train.jsonl", "validation.jsonl")
               for line in (out / f).read_text().splitlines()]
    sent = {e["user_sha"] for e in run["log"] if e["kind"] == "distill"}
    by_question = {r["question"]: r for r in run["rows"]}
    for record in records:
        system, user, assistant = record["messages"]
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        # the user message is exactly the one ReasonDistill sent
        assert hashlib.sha256(user["content"].encode()).hexdigest() in sent
        row = next(r for q, r in by_question.items() if f"Question: {q}\n" in user["content"])
        assert assistant["content"] == row["reasoning"]
        position = user["content"].index(f"[{row['reasoning_positive_label']}]\n")
        assert user["content"][position:].split("\n", 1)[1].startswith(
            row[TEXT][:100])


def test_chat_renders_through_the_embedded_models_template(run, tmp_path) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from llama_cpp import Llama
    from rare_embedded import find_model_file

    model = Llama(model_path=str(find_model_file()), vocab_only=True, verbose=False)
    template = model.metadata["tokenizer.chat_template"]
    model.close()
    out, _ = export(run, "chat", tmp_path)
    messages = json.loads((out / "train.jsonl").read_text().splitlines()[0])["messages"]
    text = ImmutableSandboxedEnvironment().from_string(template).render(
        messages=messages, add_generation_prompt=False, bos_token="", eos_token="")
    where = [text.index(f"<|im_start|>{m['role']}\n{m['content']}") for m in messages]
    assert where == sorted(where) and len(set(where)) == 3
    assert text.rstrip().endswith("<|im_end|>")


def test_retrieval_formats_read_back(run, tmp_path) -> None:
    kept = kept_rows(run)
    negatives = sum(len(r["hard_negatives"]) for r in kept)
    out, _ = export(run, "triplets", tmp_path, "--val-fraction", "0")
    triplets = load_json(out / "train.jsonl")
    assert set(triplets.column_names) == {"anchor", "positive", "negative"}
    assert len(triplets) == negatives
    assert set(triplets["anchor"]) == {r["question"] for r in kept}

    out, _ = export(run, "ntuple", tmp_path)
    ntuple = load_json(out / "train.jsonl", out / "validation.jsonl")
    width = max(len(r["hard_negatives"]) for r in run["rows"] if r["hard_negatives"])
    assert set(ntuple.column_names) == {"anchor", "positive"} | {
        f"negative_{k}" for k in range(1, width + 1)}
    assert len(ntuple) == sum(len(r["hard_negatives"]) == width for r in kept)


def test_beir_reads_back(run, tmp_path) -> None:
    import datasets

    kept = kept_rows(run)
    out, _ = export(run, "beir", tmp_path)
    corpus = load_json(out / "corpus.jsonl")
    queries = load_json(out / "queries.jsonl")
    assert set(corpus.column_names) == {"_id", "title", "text"}
    assert len(corpus) == 10  # every document of the run; the negatives are among them
    # the run mined without an id column, so documents are named as BM25HardNeg named them
    assert set(corpus["_id"]) == {f"row{i}" for i in range(10)}
    assert len(queries) == 8 and set(queries["text"]) == {r["question"] for r in kept}
    qrels = datasets.load_dataset("csv", delimiter="\t", split="train", data_files=[
        str(out / "qrels" / "train.tsv"), str(out / "qrels" / "dev.tsv")])
    assert qrels.column_names == ["query-id", "corpus-id", "score"]
    assert len(qrels) == 8 + sum(len(r["hard_negatives_ids"]) for r in kept)
    assert sum(qrels["score"]) == 8  # one positive per query, the negatives score 0
    assert set(qrels["corpus-id"]) <= set(corpus["_id"])


def test_hf_dataset_and_card(run, tmp_path) -> None:
    import datasets

    out, _ = export(run, "hf", tmp_path)
    data = datasets.load_from_disk(str(out))
    assert {k: len(v) for k, v in data.items()} == {"train": 6, "validation": 2}
    assert {"id", "question", "scenario", "positive", "reasoning", "messages",
            "reasoning_grounded", "hard_negatives"} <= set(data["train"].column_names)
    assert all(data["train"]["reasoning_grounded"])
    card = (out / "README.md").read_text()
    for needle in ("| model | export-test |", "| rows in the run | 10 |",
                   "| left out: ungrounded | 1 |", "| left out: failed: unusable reply | 1 |",
                   "**ReasonDistill**", '"max_samples": 2', "grounded replies | 8 of 9",
                   "failed, unusable reply: 1"):
        assert needle in card, needle


def test_include_failed_keeps_what_the_format_can_hold(run, tmp_path) -> None:
    out, proc = export(run, "chat", tmp_path, "--include-failed", "--val-fraction", "0")
    assert len(load_json(out / "train.jsonl")) == 9  # the ungrounded row is back
    assert "left out: no reasoning: 1" in proc.stdout  # a row with no reasoning cannot be
    out, _ = export(run, "triplets", tmp_path, "--include-failed", "--force")
    assert len(load_json(out / "train.jsonl", out / "validation.jsonl")) == sum(
        len(r["hard_negatives"] or []) for r in run["rows"])


def test_split_is_seeded(run, tmp_path) -> None:
    first, _ = export(run, "chat", tmp_path / "a", "--seed", "3")
    again, _ = export(run, "chat", tmp_path / "b", "--seed", "3")
    other, _ = export(run, "chat", tmp_path / "c", "--seed", "4")
    read = [(p / "validation.jsonl").read_text() for p in (first, again, other)]
    assert read[0] == read[1] and read[0] != read[2]


def test_bad_input_is_named(run, tmp_path) -> None:
    rows = [{k: v for k, v in r.items() if k != "reasoning_documents"} for r in run["rows"]]
    lacking = tmp_path / "old.jsonl"
    write_records(lacking, rows)
    proc = rare("export", str(lacking), "--format", "chat", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"{lacking}: format 'chat' needs column 'reasoning_documents', which the rows "
            "lack") in proc.stderr

    proc = rare("export", str(run["out"]), "--format", "parquet-please", "--out",
                str(tmp_path / "y"))
    assert proc.returncode == 1
    assert ("unknown export format 'parquet-please'; known formats: alpaca, beir, chat, hf, "
            "ntuple, sharegpt, triplets") in proc.stderr

    out, _ = export(run, "chat", tmp_path)
    before = (out / "train.jsonl").read_text()
    proc = rare("export", str(run["out"]), "--format", "alpaca", "--out", str(out))
    assert proc.returncode == 1 and f"{out} already exists; pass --force" in proc.stderr
    assert (out / "train.jsonl").read_text() == before
    proc = rare("export", str(run["out"]), "--format", "alpaca", "--out", str(out), "--force")
    assert proc.returncode == 0 and not (out / "train.jsonl").exists()

    proc = rare("export", str(run["out"]), "--format", "chat", "--out", str(tmp_path / "z"),
                "--push-to-hub", "me/data")
    assert proc.returncode == 1 and "--push-to-hub needs --format hf" in proc.stderr
    env = {k: "" for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    proc = rare("export", str(run["out"]), "--format", "hf", "--out", str(tmp_path / "z"),
                "--push-to-hub", "me/data", env=env)
    assert proc.returncode == 1 and "needs a Hugging Face token" in proc.stderr
    assert not (tmp_path / "z").exists()
