"""The LLM false-negative judge: verdicts, replacements from deeper candidates, the control
sample, and journaled, cached, resumable calls; against a rule-following serving and a real
llama.cpp server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from llama_server import N_CTX
from rare_stages.judge import (
    Candidate,
    FalseNegativeJudge,
    JudgeItem,
    NegativeJudge,
    parse_verdict,
)

import rare.retrievers
from rare import ChatRequest, Completion, FileStorage, LLMServing, SettingsError
from rare.storage import read_records, write_records


class Oracle(LLMServing):
    """Answers as a perfect judge would when a document says so: "yes" when it contains
    the word ANSWERS, a reply with no JSON when it contains GARBLED, else "no"."""

    def __init__(self) -> None:
        super().__init__(model_name="oracle", max_workers=2)
        self.documents: list[str] = []

    def complete(self, request: ChatRequest) -> Completion:
        prompt = request.messages[-1]["content"]
        document = prompt.split("<<<", 1)[1].split(">>>", 1)[0]
        self.documents.append(document.strip())
        if "GARBLED" in document:
            return Completion(text="I think so")
        verdict = "yes" if "ANSWERS" in document else "no"
        return Completion(text=json.dumps({"verdict": verdict, "reason": "said so\nmore"}),
                          prompt_tokens=10, completion_tokens=5)


@pytest.mark.parametrize("reply,expected", [
    ('{"verdict": "yes", "reason": "It states the rule."}', ("yes", "It states the rule.")),
    ('```json\n{"Verdict": "No.", "reason": "off topic"}\n```', ("no", "off topic")),
    ('{"verdict": true}', ("yes", "")),
    ('{"answer": "no", "reason": "a\\nb"}', ("no", "a")),
])
def test_verdicts_are_parsed(reply: str, expected: tuple[str, str]) -> None:
    assert parse_verdict(Completion(text=reply)) == expected


@pytest.mark.parametrize("reply,reason", [
    ("no json", "no JSON object"),
    ('{"verdict": "maybe"}', "must be \"yes\" or \"no\""),
    ('{"reason": "x"}', "must be \"yes\" or \"no\""),
])
def test_unusable_verdicts_say_why(reply: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_verdict(Completion(text=reply))


def test_dropped_negatives_are_replaced_from_deeper_candidates() -> None:
    serving = Oracle()
    judge = FalseNegativeJudge(serving, control_rate=1.0)
    cands = [Candidate(f"d{r}", text, 10.0 - r, r) for r, text in enumerate(
        ["ANSWERS it", "unrelated", "ANSWERS too", "GARBLED", "deeper one", "deepest"])]
    short = [Candidate("x0", "ANSWERS"), Candidate("x1", "fine")]
    items = [JudgeItem("q1", cands, 3, positive="the ANSWERS", control=True),
             JudgeItem("q2", short, 2, positive="the positive", control=True)]
    first, second = judge.judge(items)
    # d0 and d2 answer: dropped and replaced by d3 and d4, the next ones down
    assert [c.id for c in first.kept] == ["d1", "d3", "d4"]
    assert [j["id"] for j in first.judged] == ["d0", "d1", "d2", "d3", "d4"]
    assert [j["verdict"] for j in first.judged] == ["yes", "no", "yes", None, "no"]
    assert first.judged[0]["reason"] == "said so"  # one line
    assert "unusable reply" in first.judged[3]["reason"]  # kept: not judged to answer
    assert max(c.rank or 0 for c in first.kept) == 4 and first.dropped == 2
    # the candidates ran out: one kept of two
    assert [c.id for c in second.kept] == ["x1"] and second.dropped == 1
    assert first.control == {"verdict": "yes", "reason": "said so"}
    assert second.control is not None and second.control["verdict"] == "no"  # a miss
    # "d5" was never needed, so never asked about; GARBLED was asked twice (a retry)
    assert "deepest" not in serving.documents
    assert serving.documents.count("GARBLED") == 2


def test_bad_judge_settings_name_the_setting() -> None:
    from rare.operators import BM25HardNeg

    with pytest.raises(SettingsError, match="judge_control_rate must be in"):
        BM25HardNeg(judge=Oracle(), judge_control_rate=1.5)
    with pytest.raises(SettingsError, match="judge_reserve must be >= 0"):
        BM25HardNeg(judge=Oracle(), judge_reserve=-1)
    with pytest.raises(SettingsError, match="control_rate must be in"):
        NegativeJudge(Oracle(), control_rate=-0.1)
    with pytest.raises(SettingsError, match="judge must be an LLM serving"):
        BM25HardNeg(judge="yes")  # type: ignore[arg-type]


def test_control_sample_is_seeded() -> None:
    judge = FalseNegativeJudge(Oracle(), control_rate=0.3, seed=5)
    picks = [judge.is_control(f"question {i}", "positive") for i in range(1000)]
    assert 250 < sum(picks) < 350
    again = FalseNegativeJudge(Oracle(), control_rate=0.3, seed=5)
    assert picks == [again.is_control(f"question {i}", "positive") for i in range(1000)]
    assert not any(FalseNegativeJudge(Oracle(), control_rate=0).is_control("q", "p")
                   for _ in range(3))


def corpus_rows() -> list[dict[str, Any]]:
    """Eight short documents; the questions are about the first two. Rows 4 and 5 restate
    row 0's answer (the judge must drop them as negatives of row 0)."""
    texts = [
        "The capital of Freedonia is Fredville, on the river Fred.",
        "Sylvania's capital city is Sylvan, in the northern hills of Sylvania.",
        "Freedonia exports cheese and river fish; its hills are green.",
        "The river Fred floods every spring in Freedonia and in Sylvania.",
        "ANSWERS: Fredville is the capital of Freedonia.",
        "ANSWERS: Freedonia's capital is Fredville.",
        "Sylvania and Freedonia signed a cheese treaty; its capital talks failed.",
        "Green hills cover most of the capital region of Sylvania and Freedonia.",
    ]
    questions = ["What is the capital of Freedonia?", "What is the capital city of Sylvania?"]
    return [{"id": f"doc{i}", "text": t, "question": questions[i % 2]}
            for i, t in enumerate(texts)]


def test_bm25hardneg_with_a_judge_drops_answering_negatives(tmp_path: Path) -> None:
    from rare.operators import BM25HardNeg

    rows = corpus_rows()
    (tmp_path / "in.json").write_text(json.dumps(rows))
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "c"))
    serving = Oracle()
    # A margin would skip doc4 and doc5 already (they outscore the positive): without it,
    # the judge must catch them.
    op = BM25HardNeg(retriever="gensim", num_neg=2, judge=serving, judge_control_rate=1.0)
    op.run(storage.step(), input_id_key="id")
    out = storage.step().read("dict")
    first = out[0]
    assert not {"doc4", "doc5"} & set(first["hard_negatives_ids"])
    dropped = [j["id"] for j in first["hardneg_judged"] if j["verdict"] == "yes"]
    assert set(dropped) == {"doc4", "doc5"}  # both rank near the top for this question
    assert len(first["hard_negatives_ids"]) == 2 and first["hardneg_shortfall"] == 0
    assert first["hardneg_control"]["verdict"] == "no"
    stats = op.stats
    assert stats["judge_dropped"] >= 2 and stats["judge_control"] == len(rows)
    assert stats["judge_calls"] == sum(len(r["hardneg_judged"]) for r in out) + len(rows)
    # the same rows through the NegativeJudge operator, from BM25HardNeg's reserve
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "d"))
    BM25HardNeg(retriever="gensim", num_neg=2, reserve=4).run(storage.step(),
                                                              input_id_key="id")
    judge_op = NegativeJudge(Oracle(), control_rate=0.0)
    judge_op.run(storage.step())
    again = storage.step().read("dict")
    assert [r["hard_negatives_ids"] for r in again] == [r["hard_negatives_ids"] for r in out]
    assert again[0]["hardneg_control"] is None and judge_op.stats["judge_dropped"] >= 2
    # with the recommended margin, the copies of the answer never reach the judge
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "e"))
    margin = BM25HardNeg(retriever="gensim", num_neg=2, judge=Oracle(), max_score_ratio=0.95)
    margin.run(storage.step(), input_id_key="id")
    first = storage.step().read("dict")[0]
    assert not {"doc4", "doc5"} & {j["id"] for j in first["hardneg_judged"]}
    assert margin.stats["skipped_above_margin"] >= 2


class Recorder(Oracle):
    """The Oracle, keeping every chat it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.chats: list[list[dict[str, str]]] = []

    def complete(self, request: ChatRequest) -> Completion:
        self.chats.append(list(request.messages))
        return super().complete(request)


def test_the_judge_asks_in_the_documents_language(tmp_path: Path) -> None:
    from rare_stages.prompts import JUDGE_SYSTEM, JUDGE_SYSTEM_ZH, JUDGE_USER_ZH

    from rare.operators import BM25HardNeg

    judge = FalseNegativeJudge(Recorder())
    chat = judge.request("民法典规定的诉讼时效是多久？", "诉讼时效期间为三年。", 0, "zh")
    assert chat.messages[0] == {"role": "system", "content": JUDGE_SYSTEM_ZH}
    assert chat.messages[-1]["content"] == JUDGE_USER_ZH.format(
        question="民法典规定的诉讼时效是多久？", document="诉讼时效期间为三年。")
    zh_item = JudgeItem("诉讼时效是多久？", [], 1, positive="向人民法院请求保护民事权利的诉讼时效期间为三年。")
    en_item = JudgeItem("How long is the limitation period?", [], 1,
                        positive="The limitation period is three years.")
    assert [judge.item_language(i) for i in (zh_item, en_item)] == ["zh", "en"]
    assert FalseNegativeJudge(Recorder(), language="en").item_language(zh_item) == "en"
    # BM25HardNeg: a Chinese row's candidates and control are asked about in Chinese, an
    # English row's in English (language "auto": the row's own text decides)
    from zh_data import load

    stard = load("stard")
    rows = [{"id": d, "text": t, "question": t[:40]}
            for d, t in zip(stard.ids[:30], stard.texts[:30])]
    rows += [{"id": f"en{i}", "text": t, "question": t.split(".")[0]}
             for i, t in enumerate(r["text"] for r in corpus_rows())]
    (tmp_path / "in.json").write_text(json.dumps(rows, ensure_ascii=False))
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "c"))
    serving = Recorder()
    op = BM25HardNeg(retriever="tantivy", num_neg=1, judge=serving, judge_control_rate=1.0,
                     language="auto")
    op.run(storage.step(), input_id_key="id")
    systems = {chat[0]["content"] for chat in serving.chats}
    assert systems == {JUDGE_SYSTEM_ZH, JUDGE_SYSTEM}
    for chat in serving.chats:
        question = chat[-1]["content"].split("\n", 2)[1]
        chinese = any("\u4e00" <= ch <= "\u9fff" for ch in question)
        assert (chat[0]["content"] == JUDGE_SYSTEM_ZH) is chinese, chat
        assert chat[-1]["content"].startswith("问题：" if chinese else "Question:")
    assert op.stats["judge_control"] == len(rows)


def test_a_pipeline_makes_no_serving_for_a_step_that_does_not_judge() -> None:
    from rare.pipeline import Pipeline, Step

    plain = Pipeline([Step("BM25HardNeg")], serving="no-such-serving")
    assert plain.serving is None and not plain.needs_llm()
    from rare.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        Pipeline([Step("BM25HardNeg", init={"judge": True})], serving="no-such-serving")


# -- against a real llama.cpp server --------------------------------------------------------
def server_serving(url: str, cache: Path | None = None) -> LLMServing:
    import rare.serving

    serving = rare.serving.create("openai", api_url=f"{url}/chat/completions",
                                  model_name="smollm2", max_workers=2, context_window=N_CTX,
                                  structured_output="json_object", temperature=0.0, seed=0)
    serving.use_cache(cache if cache is not None else False)
    return serving


def cacm_rows(n: int) -> list[dict[str, Any]]:
    """CACM documents, each asked about by its own title (so the positive answers)."""
    rows = read_records(shared("cacm", "cacm.jsonl"))
    out = []
    for row in rows:
        title = row["contents"].split("\n", 1)[0].strip()
        if len(row["contents"]) > 400 and len(title) > 25:
            out.append({"id": row["id"], "text": row["contents"][:1500],
                        "question": f"What is known about {title.rstrip('.')}?"})
        if len(out) == n:
            break
    return out


@pytest.mark.slow
def test_judge_verdicts_from_a_real_server(tmp_path: Path, llama_server: str) -> None:
    from rare.operators import BM25HardNeg

    rows = cacm_rows(4)
    (tmp_path / "in.json").write_text(json.dumps(rows))
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "c"))
    serving = server_serving(llama_server)
    corpus = rare.retrievers.create("tantivy")
    docs = read_records(shared("cacm", "cacm.jsonl"))
    corpus.index([d["id"] for d in docs], [d["contents"][:1500] for d in docs])
    op = BM25HardNeg(retriever=corpus, index_rows=False, num_neg=1, judge=serving,
                     judge_reserve=2, judge_control_rate=1.0)
    op.run(storage.step(), input_id_key="id")
    out = storage.step().read("dict")
    judged = [j for r in out for j in r["hardneg_judged"]]
    assert judged and all(set(j) == {"id", "verdict", "reason"} for j in judged)
    parsed = [j for j in judged if j["verdict"] in ("yes", "no")]
    assert len(parsed) >= 0.8 * len(judged)  # the grammar keeps a 135M model's JSON valid
    for row in out:
        verdict = {j["id"]: j["verdict"] for j in row["hardneg_judged"]}
        kept = row["hard_negatives_ids"]
        assert all(verdict[d] != "yes" for d in kept)
        # replacements come from deeper candidates: asked in rank order, kept in rank order
        asked = [j["id"] for j in row["hardneg_judged"]]
        assert kept == [d for d in asked if verdict[d] != "yes"][:1]
        dropped = sum(v == "yes" for v in verdict.values())
        # asked until one was kept, or the candidates (1 + judge_reserve at most) ran out
        assert len(asked) == dropped + len(kept) <= 3
        assert row["hardneg_shortfall"] == 1 - len(kept)
    assert op.stats["judge_calls"] == len(judged) + op.stats["judge_control"]
    assert op.stats["judge_control"] >= 0.75 * len(rows)
    assert serving.usage["calls"] >= op.stats["judge_calls"]
    corpus.close()
    serving.close()


def judge_config(tmp_path: Path, url: str, rows: Path) -> Path:
    config = tmp_path / "judge.toml"
    config.write_text(f"""[pipeline]
input = "{rows}"
output = "{tmp_path / 'out.jsonl'}"
cache_path = "{tmp_path / 'steps'}"
no_cache = true

[serving]
name = "openai"
api_url = "{url}/chat/completions"
model_name = "smollm2"
max_workers = 1
context_window = {N_CTX}
structured_output = "json_object"
temperature = 0.0
seed = 0

[retriever]
name = "gensim"

[[steps]]
operator = "BM25HardNeg"
init = {{ judge = true, judge_reserve = 2, judge_control_rate = 1.0 }}
run = {{ input_id_key = "id", num_neg = 1 }}
""")
    return config


def summary_counts(stdout: str) -> tuple[int, int]:
    """(judge questions, LLM calls) from a run's summary."""
    questions = re.search(r"BM25HardNeg judge: (\d+) questions", stdout)
    calls = re.search(r"LLM calls (\d+)", stdout)
    assert questions and calls, stdout
    return int(questions.group(1)), int(calls.group(1))


@pytest.mark.slow
def test_a_killed_judge_run_resumes_without_asking_again(tmp_path: Path,
                                                         llama_server: str) -> None:
    write_records(tmp_path / "rows.jsonl", cacm_rows(6))
    config = judge_config(tmp_path, llama_server, tmp_path / "rows.jsonl")
    args = [sys.executable, "-m", "rare.cli", "run", "--config", str(config)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "steps").glob("*journal*"))
            if found and len(found[0].read_text().splitlines()) >= 4:
                journal = found[0]
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert journal is not None, "the run finished or stalled before the kill"
    answered = len([line for line in journal.read_text().splitlines() if line.strip()])
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    questions, calls = summary_counts(resumed.stdout)
    # every reply the killed run finished is reused from the journal, not asked again
    assert calls <= questions - answered and calls > 0
    out = read_records(tmp_path / "out.jsonl")
    assert len(out) == 6 and all(r["hardneg_judged"] for r in out)


@pytest.mark.slow
def test_a_rerun_reads_the_verdicts_from_the_cache(tmp_path: Path, llama_server: str) -> None:
    from rare.pipeline import Pipeline, Step

    write_records(tmp_path / "rows.jsonl", cacm_rows(3))
    outputs = []
    for attempt in range(2):
        serving = server_serving(llama_server, cache=tmp_path / "responses")
        step = Step("BM25HardNeg", init={"judge": True, "retriever": "gensim",
                                         "judge_reserve": 1},
                    run={"input_id_key": "id", "num_neg": 1})
        report = Pipeline([step], serving=serving).run(
            tmp_path / "rows.jsonl", tmp_path / f"out{attempt}.jsonl",
            cache_path=tmp_path / f"steps{attempt}")
        questions = report.stages[0].stats["judge_calls"]
        if attempt == 0:
            assert serving.usage["calls"] >= questions >= 3
        else:
            assert serving.usage["calls"] == 0
            assert serving.usage["cache_hits"] == questions
        outputs.append(read_records(tmp_path / f"out{attempt}.jsonl"))
        serving.close()
    assert [r["hardneg_judged"] for r in outputs[0]] == [r["hardneg_judged"] for r in outputs[1]]


@pytest.mark.slow
def test_rare_run_judge_flag_judges_with_the_runs_serving(tmp_path: Path,
                                                          llama_server: str) -> None:
    """`rare run --judge` turns the judge on with the run's serving; a Chinese row is
    asked in Chinese and its verdicts parse like the English rows'."""
    from zh_data import load

    stard = load("stard")
    # three statutes, each asked about by its own opening: each has the others as candidates
    rows = cacm_rows(2) + [{"id": d, "text": t, "question": t[:30]}
                           for d, t in zip(stard.ids[:3], stard.texts[:3])]
    write_records(tmp_path / "rows.jsonl", rows)
    config = judge_config(tmp_path, llama_server, tmp_path / "rows.jsonl")
    config.write_text(config.read_text().replace(
        "init = { judge = true, judge_reserve = 2, judge_control_rate = 1.0 }",
        "init = { judge_reserve = 1, judge_control_rate = 1.0 }"))
    run = [sys.executable, "-m", "rare.cli", "run", "--config", str(config), "--retriever",
           "tantivy"]
    plain = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "BM25HardNeg judge" not in plain.stdout  # no judge unless asked
    judged = subprocess.run([*run, "--judge"], capture_output=True, text=True, timeout=600)
    assert judged.returncode == 0, judged.stderr[-3000:]
    questions, calls = summary_counts(judged.stdout)
    assert questions >= 2 * len(rows) and calls >= questions  # a control and a candidate each
    out = read_records(tmp_path / "out.jsonl")
    verdicts = [j["verdict"] for r in out for j in r["hardneg_judged"]]
    assert all(r["hardneg_judged"] for r in out) and all(r["hardneg_control"] for r in out)
    assert sum(v in ("yes", "no") for v in verdicts) >= 0.8 * len(verdicts)
    chinese = [j["verdict"] for r in out[2:] for j in [*r["hardneg_judged"], r["hardneg_control"]]]
    assert sum(v in ("yes", "no") for v in chinese) >= 0.8 * len(chinese), out[2:]
