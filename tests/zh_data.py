"""The Chinese retrieval sets of ../shared/data/zh (BEIR layout), read for the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from conftest import shared

from rare.evaluation import read_qrels

SETS = ("stard", "cmrc2018", "csl")


@dataclass(frozen=True)
class BeirSet:
    name: str
    ids: list[str]
    texts: list[str]
    qids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]


@cache
def load(name: str) -> BeirSet:
    folder = shared("zh", name)
    ids, texts = [], []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(row["_id"])
            texts.append(f"{row['title']}\n{row['text']}" if row.get("title") else row["text"])
    qids, queries = [], []
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            qids.append(row["_id"])
            queries.append(row["text"])
    return BeirSet(name, ids, texts, qids, queries, read_qrels(folder / "qrels" / "test.tsv"))
