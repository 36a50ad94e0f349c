"""The first-party exporters of rare-synth (``rare export --format NAME``).

Reasoning data, for fine-tuning the student as the RARE authors did:

* ``sharegpt`` and ``alpaca``: LLaMA-Factory's two dataset formats, as JSON files with the
  ``dataset_info.json`` that names them (``--dataset NAME --dataset_dir DIR``);
* ``chat``: OpenAI / TRL ``messages`` JSONL;
* ``hf``: a Hugging Face ``datasets`` DatasetDict (``save_to_disk``) with a dataset card.

Each conversation is the one the teacher had: the ReasonDistill system prompt, the user
prompt rebuilt from the scenario, the question and the documents in the order the teacher
saw them (``reasoning_documents``), and the reasoning as the assistant's reply.

Retrieval data, for training the retriever on the same hard negatives:

* ``triplets`` (one row per negative) and ``ntuple`` (one row per question) in
  sentence-transformers' column layout: ``anchor``, ``positive``, ``negative`` /
  ``negative_1`` .. ``negative_n``;
* ``beir``: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{train,dev}.tsv`` (the positive
  with score 1, the hard negatives' ids with score 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rare_stages.prompts import distill_messages

from rare import hookimpl
from rare.export import (
    ExportContext,
    Exporter,
    Row,
    row_id,
    write_json,
    write_jsonl,
)
from rare.hookspecs import Register
from rare_export.card import dataset_card

__all__ = ["AlpacaExporter", "BeirExporter", "ChatExporter", "HFExporter", "NTupleExporter",
           "ShareGPTExporter", "TripletsExporter", "chat_messages"]

#: the columns a conversation is rebuilt from
CHAT_COLUMNS = ("question", "scenario", "reasoning", "reasoning_documents")
#: file names of the splits in the JSON formats
SPLIT_FILES = {"train": "train", "validation": "validation"}


def chat_messages(row: Row) -> list[dict[str, str]]:
    """system, user (scenario, question, labelled documents in the recorded order) and
    assistant (the reasoning), as the teacher had them."""
    messages = distill_messages(str(row["scenario"]), str(row["question"]),
                                [str(d) for d in row["reasoning_documents"]])
    return [*messages, {"role": "assistant", "content": str(row["reasoning"])}]


class _ReasoningExporter(Exporter):
    required_columns: ClassVar[tuple[str, ...]] = CHAT_COLUMNS

    def skip(self, row: Row) -> str | None:
        if not isinstance(row.get("reasoning"), str) or not row["reasoning"].strip():
            return "no reasoning"
        if not isinstance(row.get("reasoning_documents"), list):
            return "no recorded documents"
        if not row.get("question") or not row.get("scenario"):
            return "no question or scenario"
        return None


class _LlamaFactoryExporter(_ReasoningExporter):
    """JSON files per split plus the ``dataset_info.json`` entries that name them."""

    formatting: ClassVar[str] = ""

    def record(self, row: Row) -> dict[str, Any]:
        raise NotImplementedError

    def info_entry(self, file_name: str) -> dict[str, Any]:
        raise NotImplementedError

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        files = []
        info: dict[str, Any] = {}
        for split, rows in splits.items():
            path = write_json(ctx.out / f"{SPLIT_FILES[split]}.json",
                              [self.record(r) for r in rows])
            files.append(path)
            entry = ctx.name if split == "train" else f"{ctx.name}_{split}"
            info[entry] = self.info_entry(path.name)
        files.append(write_json(ctx.out / "dataset_info.json", info))
        return files


class ShareGPTExporter(_LlamaFactoryExporter):
    """LLaMA-Factory sharegpt: ``conversations`` (human, gpt) and ``system``."""

    description = "LLaMA-Factory sharegpt JSON with its dataset_info.json entry"

    def record(self, row: Row) -> dict[str, Any]:
        system, user, assistant = chat_messages(row)
        return {"conversations": [{"from": "human", "value": user["content"]},
                                  {"from": "gpt", "value": assistant["content"]}],
                "system": system["content"]}

    def info_entry(self, file_name: str) -> dict[str, Any]:
        return {"file_name": file_name, "formatting": "sharegpt",
                "columns": {"messages": "conversations", "system": "system"},
                "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                         "assistant_tag": "gpt"}}


class AlpacaExporter(_LlamaFactoryExporter):
    """LLaMA-Factory alpaca: ``instruction`` (the user prompt), ``input`` (empty),
    ``output`` (the reasoning) and ``system``."""

    description = "LLaMA-Factory alpaca JSON with its dataset_info.json entry"

    def record(self, row: Row) -> dict[str, Any]:
        system, user, assistant = chat_messages(row)
        return {"instruction": user["content"], "input": "", "output": assistant["content"],
                "system": system["content"]}

    def info_entry(self, file_name: str) -> dict[str, Any]:
        return {"file_name": file_name, "formatting": "alpaca",
                "columns": {"prompt": "instruction", "query": "input", "response": "output",
                            "system": "system"}}


class ChatExporter(_ReasoningExporter):
    """OpenAI / TRL chat JSONL: one ``{"messages": [...]}`` per line."""

    description = "OpenAI / TRL messages JSONL (system, user, assistant)"

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        return [write_jsonl(ctx.out / f"{SPLIT_FILES[split]}.jsonl",
                            [{"messages": chat_messages(r)} for r in rows])
                for split, rows in splits.items()]


def _negatives(row: Row) -> list[str]:
    value = row.get("hard_negatives")
    return [str(v) for v in value] if isinstance(value, list) else []


class _RetrievalExporter(Exporter):
    required_columns: ClassVar[tuple[str, ...]] = ("question", "text", "hard_negatives")

    def skip(self, row: Row) -> str | None:
        if not row.get("question") or not row.get(self.text_key):
            return "no question or text"
        if not _negatives(row):
            return "no negatives"
        return None


class TripletsExporter(_RetrievalExporter):
    """sentence-transformers triplets: ``anchor``, ``positive``, ``negative``, one row per
    hard negative."""

    description = "sentence-transformers (anchor, positive, negative) JSONL, a row per negative"

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        return [write_jsonl(ctx.out / f"{SPLIT_FILES[split]}.jsonl",
                            [{"anchor": r["question"], "positive": r[self.text_key],
                              "negative": neg} for r in rows for neg in _negatives(r)])
                for split, rows in splits.items()]


class NTupleExporter(_RetrievalExporter):
    """sentence-transformers n-tuples: ``anchor``, ``positive``, ``negative_1`` ..
    ``negative_n``, one row per question; n is the most negatives any row has, and a row
    with fewer is left out (a column cannot be missing)."""

    description = "sentence-transformers (anchor, positive, negative_1..n) JSONL"

    def __init__(self, text_key: str = "text") -> None:
        super().__init__(text_key)
        self.n = 0

    def prepare(self, rows: list[Row]) -> None:
        self.n = max((len(_negatives(r)) for r in rows), default=0)

    def skip(self, row: Row) -> str | None:
        reason = super().skip(row)
        if reason is None and len(_negatives(row)) < self.n:
            return f"fewer than {self.n} negatives"
        return reason

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        def record(row: Row) -> dict[str, Any]:
            out = {"anchor": row["question"], "positive": row[self.text_key]}
            out.update({f"negative_{k}": neg
                        for k, neg in enumerate(_negatives(row)[: self.n], start=1)})
            return out

        ctx.counts["negatives_per_row"] = self.n
        return [write_jsonl(ctx.out / f"{SPLIT_FILES[split]}.jsonl", [record(r) for r in rows])
                for split, rows in splits.items()]


class BeirExporter(_RetrievalExporter):
    """BEIR: the corpus (every document of the run and every negative), the kept rows'
    questions, and qrels per split (positive 1, hard negatives 0)."""

    description = "BEIR corpus.jsonl, queries.jsonl, qrels/{train,dev}.tsv (negatives score 0)"
    required_columns: ClassVar[tuple[str, ...]] = ("question", "text", "hard_negatives",
                                                   "hard_negatives_ids")
    QRELS = {"train": "train", "validation": "dev"}

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        corpus: dict[str, dict[str, str]] = {}
        for row in ctx.all_rows:
            text = row.get(self.text_key)
            if isinstance(text, str) and text.strip():
                corpus.setdefault(row_id(row), {"_id": row_id(row),
                                                "title": str(row.get("title") or ""),
                                                "text": text})
        for row in ctx.all_rows:
            for doc_id, text in zip(row.get("hard_negatives_ids") or [], _negatives(row)):
                corpus.setdefault(str(doc_id), {"_id": str(doc_id), "title": "", "text": text})
        files = [write_jsonl(ctx.out / "corpus.jsonl", list(corpus.values()))]
        queries = []
        for split, rows in splits.items():
            lines = ["query-id\tcorpus-id\tscore"]
            for row in rows:
                qid = f"q{row['_index']}"
                queries.append({"_id": qid, "text": row["question"]})
                lines.append(f"{qid}\t{row_id(row)}\t1")
                lines += [f"{qid}\t{doc_id}\t0" for doc_id in row.get("hard_negatives_ids")
                          or []]
            path = ctx.out / "qrels" / f"{self.QRELS[split]}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files.append(path)
        files.insert(1, write_jsonl(ctx.out / "queries.jsonl", queries))
        return files


#: the columns of the ``hf`` format, from the run's columns
HF_COLUMNS = ("question", "scenario", "reasoning", "reasoning_answer", "reasoning_grounded",
              "reasoning_cited", "reasoning_samples", "reasoning_positive_label",
              "reasoning_documents", "hard_negatives", "hard_negatives_ids")


class HFExporter(_ReasoningExporter):
    """A Hugging Face ``datasets`` DatasetDict saved with ``save_to_disk``, with a dataset
    card (``README.md``) that lists the run's settings, teacher, counts and failures."""

    description = "Hugging Face datasets (save_to_disk) with a dataset card; --push-to-hub"
    can_push = True

    def record(self, row: Row) -> dict[str, Any]:
        out: dict[str, Any] = {"id": row_id(row), "positive": row.get(self.text_key)}
        out.update({c: row.get(c) for c in HF_COLUMNS})
        out["messages"] = chat_messages(row) if self.skip(row) is None else None
        return out

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        import datasets

        data = datasets.DatasetDict({split: datasets.Dataset.from_list(
            [self.record(r) for r in rows]) for split, rows in splits.items()})
        data.save_to_disk(str(ctx.out))
        card = ctx.out / "README.md"
        card.write_text(dataset_card(ctx, list(data[next(iter(data))].column_names)
                                     if len(data) else []), encoding="utf-8")
        return sorted(p for p in ctx.out.rglob("*") if p.is_file())

    def push_to_hub(self, repo: str, ctx: ExportContext, token: str) -> None:
        import datasets
        from huggingface_hub import HfApi

        data = datasets.load_from_disk(str(ctx.out))
        data.push_to_hub(repo, token=token)
        # the card after the data: push_to_hub writes a card of its own
        HfApi(token=token).upload_file(path_or_fileobj=str(ctx.out / "README.md"),
                                       path_in_repo="README.md", repo_id=repo,
                                       repo_type="dataset")


EXPORTERS: dict[str, type[Exporter]] = {
    "sharegpt": ShareGPTExporter, "alpaca": AlpacaExporter, "chat": ChatExporter,
    "triplets": TripletsExporter, "ntuple": NTupleExporter, "beir": BeirExporter,
    "hf": HFExporter,
}


@hookimpl
def register_exporters(register: Register) -> None:
    for name, cls in EXPORTERS.items():
        register(cls, name=name)
