"""The embedded model's grammar: schema patterns shape its strings, so the 135M model writes
questions (an interrogative opening, one question mark at the end), not fragments."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from rare_embedded import grammar_for
from rare_stages.prompts import (
    DOC2QUERY_SCHEMA_PATTERNS,
    DOC2QUERY_SCHEMA_ZH_PATTERNS,
    DOC2QUERY_SYSTEM,
    DOC2QUERY_USER,
    prompts_for,
)

from rare import ChatRequest


def schema(**patterns: str) -> dict:
    return {"type": "object", "properties": {
        name: {"type": "string", "maxLength": 50, "pattern": p} for name, p in patterns.items()}}


@pytest.mark.parametrize("pattern,rule", [
    (r"^[A-Z][^?]{2,9}\?$", r'"\"" [A-Z] [^?"\\\x00-\x1F\x7F]{2,9} "?" "\""'),
    (r"^(Why|How) .+\.$", r'"\"" ("Why" | "How") " " char{1,50} "." "\""'),
    (r"^\d{3}-\w*$", r'"\"" [0-9]{3,3} "-" [a-zA-Z0-9_]{0,50} "\""'),
])
def test_patterns_become_rules(pattern: str, rule: str) -> None:
    gbnf = grammar_for(schema(x=pattern))
    assert gbnf is not None and f"s0 ::= {rule}" in gbnf.splitlines()


@pytest.mark.parametrize("pattern", [
    r"[A-Z]+",            # not anchored: "contains" is not a grammar
    r"^(a(b)|c)$",        # nested group
    r'^[^"]+$',           # a class that names the quote
    r"^a\Zb$",            # an escape we do not know
])
def test_patterns_the_grammar_cannot_express_give_none(pattern: str) -> None:
    assert grammar_for(schema(x=pattern)) is None


def test_every_grammar_parses_in_llama_cpp() -> None:
    from llama_cpp import LlamaGrammar

    for case in (DOC2QUERY_SCHEMA_PATTERNS, DOC2QUERY_SCHEMA_ZH_PATTERNS,
                 schema(x=r"^(Why|How) .+\.$")):
        gbnf = grammar_for(case)
        assert gbnf is not None
        LlamaGrammar.from_string(gbnf, verbose=False)


GENERATE = """
import json, sys
from llama_cpp import Llama, LlamaGrammar
from rare_embedded import find_model_file
llm = Llama(model_path=str(find_model_file()), n_ctx=512, verbose=False)
grammar = LlamaGrammar.from_json_schema(sys.argv[1], verbose=False)
out = llm.create_chat_completion(messages=[{"role": "user", "content": "Ask me something."}],
                                 grammar=grammar, max_tokens=6, seed=0)
print(out["choices"][0]["message"]["content"])
"""


def test_llama_cpps_own_schema_converter_takes_the_patterns() -> None:
    """OpenAI-compatible llama.cpp servers turn the schema into a grammar themselves; an
    escape such as ``\\.`` in a pattern makes llama-cpp-python's grammar parser fail and
    the process crash, so the patterns must survive that converter too (in a child)."""
    for case in (DOC2QUERY_SCHEMA_PATTERNS, DOC2QUERY_SCHEMA_ZH_PATTERNS):
        proc = subprocess.run([sys.executable, "-c", GENERATE, json.dumps(case)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.lstrip().startswith("{")


@pytest.mark.slow
def test_the_embedded_model_writes_questions() -> None:
    """The smoke-test model, on the demo's documents, under the Doc2Query schema."""
    from rare_embedded import EmbeddedLLMServing

    from rare.demo import python_docs

    question = re.compile(DOC2QUERY_SCHEMA_PATTERNS["properties"]["question"]["pattern"])
    scenario = re.compile(DOC2QUERY_SCHEMA_PATTERNS["properties"]["scenario"]["pattern"])
    with EmbeddedLLMServing(n_ctx=2048) as serving:
        serving.use_cache(False)
        requests = []
        for doc in python_docs(3):
            text, _ = serving.truncate(doc["text"], 300)
            requests.append(ChatRequest.from_prompt(
                DOC2QUERY_USER.format(document=text), system=DOC2QUERY_SYSTEM,
                json_schema=DOC2QUERY_SCHEMA_PATTERNS, max_tokens=400, seed=0))
        replies = serving.generate(requests)
    for reply in replies:
        obj = json.loads(reply.text or "")
        assert question.match(obj["question"]), obj
        assert scenario.match(obj["scenario"]), obj
        assert obj["question"].count("?") == 1


@pytest.mark.slow
def test_the_embedded_model_writes_chinese_questions() -> None:
    """The same for Chinese statutes (STARD): a question that opens with a Chinese character
    and ends with its only question mark, a scenario that ends with a full stop."""
    from rare_embedded import EmbeddedLLMServing
    from zh_data import load

    zh = prompts_for("zh")
    assert zh.doc2query_schema_patterns is DOC2QUERY_SCHEMA_ZH_PATTERNS
    props = DOC2QUERY_SCHEMA_ZH_PATTERNS["properties"]
    question, scenario = re.compile(props["question"]["pattern"]), \
        re.compile(props["scenario"]["pattern"])
    statutes = [t for t in load("stard").texts if len(t) > 80][:2]
    with EmbeddedLLMServing(n_ctx=2048) as serving:
        serving.use_cache(False)
        replies = serving.generate([ChatRequest.from_prompt(
            zh.doc2query_user.format(document=text), system=zh.doc2query_system,
            json_schema=DOC2QUERY_SCHEMA_ZH_PATTERNS, max_tokens=400, seed=0)
            for text in statutes])
    for reply in replies:
        obj = json.loads(reply.text or "")
        assert question.match(obj["question"]), obj
        assert scenario.match(obj["scenario"]), obj
        assert obj["question"].count("？") + obj["question"].count("?") == 1
