"""`rare bench`: a real run on CACM, the report's fields, quality checked before speed, any
registered retriever by name (a third party's too), one clear line for bad input, and the
reference retrievers (a built-in plugin, listed by `rare retrievers`, used only when named)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import shared

import rare.retrievers
from rare import Retriever, hookimpl
from rare.bench import BenchConfig, DataSpec, run_bench
from rare.bench.backends import check_backends
from rare.bench.data import dataset_name, load_dataset, read_queries
from rare.errors import (
    InputError,
    MissingDependencyError,
    RareError,
    StorageError,
    UnknownNameError,
)
from rare.plugins import pm
from rare.retriever import Hits

RARE = [sys.executable, "-m", "rare.cli"]


def cacm() -> DataSpec:
    return DataSpec(str(shared("cacm", "cacm.jsonl")), str(shared("cacm", "topics.cacm.txt")),
                    str(shared("cacm", "qrels.cacm.txt")))


def test_bench_on_cacm_writes_every_field_and_checks_quality_first(tmp_path: Path) -> None:
    backends = ["tantivy", "gensim"] + (["pyserini"] if "pyserini" in rare.retrievers.names()
                                        else [])
    data = cacm()
    proc = subprocess.run(
        [*RARE, "bench", "--corpus", data.corpus, "--queries", data.queries, "--qrels",
         data.qrels, "--backends", ",".join(backends), "--threads", "1,2", "--k", "100",
         "--k1", "0.9", "--b", "0.4", "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # quality and agreement are printed, and judged, before any speed
    assert out.index("Quality and agreement") < out.index("Speed")
    assert "agreement OK" in out[:out.index("Speed")]

    (report_path,) = tmp_path.glob("cacm-*.json")
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "cacm"
    assert (report["num_docs"], report["num_queries"], report["num_judged_queries"]) == (
        3204, 64, 52)
    assert (report["k1"], report["b"], report["top_k"], report["threads"]) == (
        0.9, 0.4, 100, [1, 2])
    assert report["backends"] == backends
    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["platform"] and machine["python"]
    assert {"rare-synth", "rare-bm25-rs", "rare-gensim"} <= set(report["packages"])
    assert report["warnings"] == []
    assert len(report["runs"]) == 2 * len(backends)
    for run in report["runs"]:
        assert run["backend"] in backends and run["threads"] in (1, 2)
        assert "error" not in run, run
        assert (run["dataset"], run["k1"], run["b"], run["top_k"]) == ("cacm", 0.9, 0.4, 100)
        assert (run["num_docs"], run["num_queries"], run["num_indexed"]) == (3204, 64, 3204)
        assert run["peak_memory_mb"] > run["baseline_memory_mb"] > 0
        assert set(run["timing"]) >= {"load_s", "build_s", "search_s", "mine_s",
                                      "build_cpu_s", "search_cpu_s", "mine_cpu_s"}
        assert run["qps"]["search"] > 0 and run["qps"]["mine"] > 0
        assert run["shortfall"] == 0
        assert set(run["quality"]) == {"ndcg@10", "recall@100", "mrr@10"}
        assert set(run["top10_overlap"]) == set(backends) - {run["backend"]}
        assert len(run["cpus_used"]) <= run["threads"]
    quality, overlap = report["quality"], report["top10_overlap"]
    assert 0.40 < quality["tantivy"]["ndcg@10"] < 0.50
    assert overlap["tantivy"]["gensim"] >= 0.9
    if "pyserini" in backends:  # the bar: nDCG@10 within 0.01 of Lucene's
        assert abs(quality["tantivy"]["ndcg@10"] - quality["pyserini"]["ndcg@10"]) <= 0.01
        assert overlap["tantivy"]["pyserini"] >= 0.95
    png = tmp_path / (report_path.stem + ".png")
    assert png.exists() or "matplotlib is not installed" in out
    # the mining options' speed, then the false-negative table, after the speed table
    assert out.index("Speed") < out.index("Mining options") < out.index("False negatives")
    for run in report["runs"]:
        options = run["mining_options"]
        assert list(options) == ["top-k", "window", "random", "margin", "window+margin"]
        assert all(o["qps"] > 0 for o in options.values())
        assert options["margin"]["skipped"]["above_margin"] > 0
        negatives = run["negatives"]
        assert (negatives["pairs"], negatives["queries"]) == (738, 49)
        rates = {v["variant"]: v for v in negatives["variants"]}
        assert rates["top-k"]["fn_rate"] > 0.5 and rates["top-k"]["full_share"] == 1.0
        assert rates["margin"]["fn_rate"] <= rates["top-k"]["fn_rate"] / 2
        assert rates["margin"]["full_share"] >= 0.9


class LuceneLike(Retriever):
    """A third party's retriever: BM25 by way of the gensim backend, under its own name."""

    name = "third-party-bm25"

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._inner = rare.retrievers.create("gensim", k1=self.k1, b=self.b)

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self._inner.index(ids, texts)

    def commit(self) -> None:
        self._inner.commit()

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        return self._inner.search_batch(queries, k, threads)

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return self._inner.get_texts(ids)

    def __len__(self) -> int:
        return len(self._inner)


class IndexOrder(LuceneLike):
    """A broken retriever: the first k documents whatever the query."""

    name = "index-order"

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        ids = self._inner._ids[:k]
        return [[(doc, 1.0) for doc in ids] for _ in queries]


@pytest.fixture
def third_party():
    class Plugin:
        @hookimpl
        def register_retrievers(self, register):
            register(LuceneLike, name="third-party-bm25")
            register(IndexOrder, name="index-order")

    plugin = Plugin()
    pm.register(plugin, name="bench-test-plugin")
    try:
        yield
    finally:
        pm.unregister(plugin)


def test_third_party_retriever_is_benchmarked_by_name(third_party: None) -> None:
    lines: list[str] = []
    report = run_bench(BenchConfig(cacm(), ["tantivy", "third-party-bm25"], threads=[1],
                                   repeat=1, out=None, in_process=True),
                       echo=lines.append, progress=lambda line: None)
    runs = {run["backend"]: run for run in report["runs"]}
    assert set(runs) == {"tantivy", "third-party-bm25"}
    assert runs["third-party-bm25"]["qps"]["mine"] > 0
    assert runs["third-party-bm25"]["peak_memory_mb"] is None  # not separable in-process
    assert report["top10_overlap"]["tantivy"]["third-party-bm25"] >= 0.9
    assert report["warnings"] == []
    assert report["mode"] == "in-process"


def test_disagreement_is_a_loud_warning_before_speed(third_party: None) -> None:
    lines: list[str] = []
    report = run_bench(BenchConfig(cacm(), ["tantivy", "index-order"], threads=[1],
                                   repeat=1, out=None, in_process=True),
                       echo=lines.append, progress=lambda line: None)
    out = "\n".join(lines)
    assert report["top10_overlap"]["tantivy"]["index-order"] < 0.1
    warning = next(line for line in lines if line.startswith("WARNING: tantivy and index-order"))
    assert "disagree" in warning
    assert out.index(warning) < out.index("Speed")
    assert report["quality"]["index-order"]["ndcg@10"] < 0.05


def test_unknown_backend_lists_the_known_ones(tmp_path: Path) -> None:
    data = cacm()
    proc = subprocess.run(
        [*RARE, "bench", "--corpus", data.corpus, "--queries", data.queries,
         "--backends", "tantivy,lucene9", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: unknown backend 'lucene9'; known backends: ")
    for name in rare.retrievers.names() + ["tantivy-py", "bm25s"]:
        assert name in line
    assert not list(tmp_path.iterdir())  # nothing ran


def test_missing_file_is_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*RARE, "bench", "--corpus", str(tmp_path / "nope.jsonl"), "--queries",
         str(shared("cacm", "topics.cacm.txt")), "--backends", "tantivy"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"Error: {tmp_path / 'nope.jsonl'}: file not found"


def write(path: Path, text: str) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


BAD_INPUT = [
    ("corpus.jsonl", '{"doc": "d1", "text": "a"}\n', InputError,
     "line 1: no id field (looked for '_id', 'id', 'docid'); the rows have: doc, text. "
     "Name it with --id-field"),
    ("corpus.jsonl", '{"id": "d1", "body": "a"}\n', InputError,
     "line 1: no text field (looked for 'text', 'contents'); the rows have: id, body"),
    ("corpus.jsonl", '{"id": "d1", "text": "a"}\n{"id": "d1", "text": "b"}\n', InputError,
     "line 2: duplicate id 'd1'"),
    ("corpus.jsonl", '{"id": "d1", "text": "a"}\n{"id": "d2"\n', StorageError,
     "line 2: invalid JSON"),
    ("corpus.jsonl", '{"id": "d1", "text": 5}\n', InputError,
     "line 1: field 'text' must be text, got int"),
    ("corpus.jsonl.gz", "not gzip", StorageError, "cannot read"),
]


@pytest.mark.parametrize("name,content,error,message", BAD_INPUT,
                         ids=["no-id", "no-text", "duplicate-id", "bad-json", "text-not-str",
                              "bad-gzip"])
def test_bad_corpus_names_file_line_and_field(tmp_path: Path, name: str, content: str,
                                              error: type[RareError], message: str) -> None:
    path = tmp_path / name
    if name.endswith(".gz") and content == "not gzip":
        path.write_text(content)
    else:
        write(path, content)
    queries = write(tmp_path / "q.tsv", "q1\thello\n")
    with pytest.raises(error) as err:
        load_dataset(DataSpec(str(path), queries))
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_field_options_and_query_formats(tmp_path: Path) -> None:
    corpus = write(tmp_path / "mini.jsonl.gz",
                   '{"pid": 7, "body": "cats purr", "head": "Cats"}\n'
                   '{"pid": 8, "body": "dogs bark", "head": ""}\n')
    queries = write(tmp_path / "queries.tsv", "q1\twhy do cats purr\nq2\tbarking\n")
    qrels = write(tmp_path / "qrels.txt", "q1 0 7 1\nq1 0 8 0\n")
    data = load_dataset(DataSpec(corpus, queries, qrels, id_field="pid", text_field="body",
                                 title_field="head"))
    assert data.ids == ["7", "8"] and data.texts == ["Cats\ncats purr", "dogs bark"]
    assert data.qids == ["q1", "q2"] and data.qrels == {"q1": {"7": 1}}
    assert data.positives[0] == "7" and data.positives[1] not in data.ids
    assert data.name == "mini"
    with pytest.raises(InputError, match=r"no field 'title' \(--title-field\)"):
        load_dataset(DataSpec(corpus, queries, id_field="pid", text_field="body",
                              title_field="title"))
    with pytest.raises(InputError, match="no judgement for any query"):
        load_dataset(DataSpec(corpus, queries, write(tmp_path / "other.txt", "x 0 7 1\n"),
                              id_field="pid", text_field="body"))
    with pytest.raises(InputError, match="neither 'qid<TAB>query' lines, BEIR queries.jsonl nor TREC topics"):
        read_queries(write(tmp_path / "plain.txt", "just some text\n"))
    topics = read_queries(shared("cacm", "topics.cacm.txt"), max_queries=3)
    assert list(topics) == ["1", "2", "3"]
    assert topics["1"].startswith("What articles exist which deal with TSS")
    assert dataset_name("/data/wiki205k/corpus.jsonl.gz") == "wiki205k"


def test_bad_settings_fail_before_anything_runs() -> None:
    with pytest.raises(UnknownNameError, match="unknown backend 'nope'"):
        run_bench(BenchConfig(cacm(), ["nope"], out=None), progress=lambda line: None)
    with pytest.raises(RareError, match="thread counts must be >= 1"):
        run_bench(BenchConfig(cacm(), ["tantivy"], threads=[0], out=None))


# -- the references: registered retrievers of a built-in plugin, used only when named ----
REFERENCE_NAMES = {"tantivy-py", "bm25s"}
BUILTIN = "rare.bench.references"


def _rare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RARE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_rare_retrievers_lists_the_references_and_their_plugin() -> None:
    listing = _rare("retrievers", "--json")
    assert listing.returncode == 0, listing.stderr
    info = {item["name"]: item for item in json.loads(listing.stdout)}
    assert REFERENCE_NAMES <= set(info)
    for name in REFERENCE_NAMES:
        assert info[name]["plugin"] == BUILTIN and info[name]["reference"] is True
    assert info["tantivy-py"]["class"] == "rare.bench.references.TantivyPy"
    assert info["tantivy"]["reference"] is False and info["tantivy"]["plugin"] != BUILTIN
    assert {name for name, item in info.items() if item["reference"]} == REFERENCE_NAMES

    text = _rare("retrievers")
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line.split()[1:] for line in text.stdout.splitlines()}
    assert lines["bm25s"] == [BUILTIN, "reference"]
    assert lines["tantivy-py"] == [BUILTIN, "reference"]
    assert "reference" not in lines["gensim"]


def test_rare_plugins_lists_the_builtin_plugin() -> None:
    listing = _rare("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    info = {item["name"]: item for item in json.loads(listing.stdout)}
    assert info[BUILTIN]["distribution"] == "rare-synth"
    assert info[BUILTIN]["registered"]["retrievers"] == ["bm25s", "tantivy-py"]
    text = _rare("plugins")
    assert "    retrievers: bm25s, tantivy-py" in text.stdout


def test_disabling_the_builtin_plugin_removes_the_references(tmp_path: Path) -> None:
    env = {"RARE_DISABLE_PLUGINS": BUILTIN}
    retrievers = json.loads(_rare("retrievers", "--json", env=env).stdout)
    names = {item["name"] for item in retrievers}
    assert names and not names & REFERENCE_NAMES and "tantivy" in names
    plugin_names = {item["name"] for item in json.loads(_rare("plugins", "--json", env=env).stdout)}
    assert BUILTIN not in plugin_names and "gensim" in plugin_names
    data = cacm()
    proc = _rare("bench", "--corpus", data.corpus, "--queries", data.queries,
                 "--reference", "bm25s", "--out", str(tmp_path), env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: unknown backend 'bm25s'; known backends: ")
    assert "(references)" not in proc.stderr  # none is registered


def test_references_are_left_out_of_every_default_list() -> None:
    from test_backend_parity import BACKENDS as PARITY

    assert REFERENCE_NAMES <= set(rare.retrievers.names())
    engines = rare.retrievers.engines()
    assert not REFERENCE_NAMES & set(engines)
    assert set(engines) == set(rare.retrievers.names()) - REFERENCE_NAMES
    assert {"tantivy", "gensim"} <= set(PARITY) and not REFERENCE_NAMES & set(PARITY)
    assert rare.retrievers.create("bm25s").reference is True
    assert rare.retrievers.create("gensim").reference is False


def test_rare_bench_without_backends_runs_the_engines_only(tmp_path: Path) -> None:
    corpus = write(tmp_path / "tiny.jsonl",
                   "".join(json.dumps({"id": f"d{i}", "text": text}) + "\n" for i, text in
                           enumerate(["cats purr softly", "dogs bark loudly", "birds sing"])))
    queries = write(tmp_path / "q.tsv", "q1\tcats\nq2\tdogs bark\n")
    proc = _rare("bench", "--corpus", corpus, "--queries", queries, "--threads", "1",
                 "--repeat", "1", "--k", "10", "--in-process", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (report_path,) = (tmp_path / "out").glob("tiny-*.json")
    report = json.loads(report_path.read_text())
    assert report["backends"] == rare.retrievers.engines()
    assert all(run["reference"] is False for run in report["runs"])


def test_references_run_when_named_and_are_marked_in_the_report() -> None:
    lines: list[str] = []
    report = run_bench(BenchConfig(cacm(), ["tantivy", "bm25s"], threads=[1],
                                   references=["tantivy-py"], repeat=1, out=None,
                                   in_process=True),
                       echo=lines.append, progress=lambda line: None)
    assert report["backends"] == ["tantivy", "bm25s", "tantivy-py"]
    runs = {run["backend"]: run for run in report["runs"]}
    assert [runs[name]["reference"] for name in report["backends"]] == [False, True, True]
    overlap = report["top10_overlap"]["tantivy"]
    assert overlap["bm25s"] >= 0.9 and overlap["tantivy-py"] >= 0.7
    for name in ("bm25s", "tantivy-py"):
        assert runs[name]["num_indexed"] == 3204 and runs[name]["qps"]["mine"] > 0
        assert 0.35 < report["quality"][name]["ndcg@10"] < 0.5


@pytest.mark.parametrize("name,module,package", [("bm25s", "bm25s", "bm25s"),
                                                 ("tantivy-py", "tantivy", "tantivy")])
def test_missing_reference_package_names_the_pip_line(monkeypatch: pytest.MonkeyPatch,
                                                      name: str, module: str,
                                                      package: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    message = f"the reference backend {name!r} needs {package}: pip install {package}"
    with pytest.raises(MissingDependencyError) as err:
        check_backends([name])
    assert str(err.value) == message
    with pytest.raises(MissingDependencyError) as err:
        rare.retrievers.create(name)
    assert str(err.value) == message
    with pytest.raises(MissingDependencyError, match=f"pip install {package}$"):
        run_bench(BenchConfig(cacm(), ["tantivy"], references=[name], out=None),
                  progress=lambda line: None)


def test_loading_the_references_imports_neither_package() -> None:
    code = ("import sys, rare.retrievers; rare.retrievers.names(); "
            "import rare.bench.references as r; "
            "print(sorted(m for m in ('tantivy', 'bm25s', 'rare.bench.runner', "
            "'rare.bench.worker') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
