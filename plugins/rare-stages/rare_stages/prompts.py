"""The prompts of the LLM stages, one set per language. Written for rare-synth; kept short so
small models cope. A stage writes in the document's language (or its ``language`` setting):
:func:`prompts_for` gives that language's set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOC2QUERY_SYSTEM = (
    "You design hard exam questions for experts. A good question forces the reader to "
    "combine several pieces of knowledge and reason in steps; it is never a trivia lookup."
)

DOC2QUERY_USER = """Read the reference material below. Then write:
- "question": one question whose answer needs the knowledge in this material and several steps of reasoning. It must be understandable on its own: never mention "the document", "the text", "the passage" or "the author". Do not ask for a definition or a single fact.
- "scenario": two or three sentences describing a realistic situation in which someone faces this question.

Answer with a JSON object and nothing else: {{"question": "<one question, ending with ?>", "scenario": "<two or three sentences>"}}

Reference material:
<<<
{document}
>>>"""

#: the words a question may open with (the schema's pattern; a small model held to it writes
#: questions, not statements with a question mark glued on)
QUESTION_OPENERS = ("What", "Why", "How", "Which", "When", "Where", "Who", "Whose", "Is", "Are",
                    "Does", "Do", "Can", "Could", "Should", "Would", "Will")

DOC2QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 10, "maxLength": 600},
        "scenario": {"type": "string", "minLength": 10, "maxLength": 800},
    },
    "required": ["question", "scenario"],
}

#: DOC2QUERY_SCHEMA with patterns: a question opens with an interrogative word and ends with
#: its only question mark; a scenario is sentences that start with a capital letter and end
#: with a period. Servings that honour ``pattern`` (the embedded model's grammar, llama.cpp,
#: OpenAI's strict structured outputs) are held to them. The final characters are classes
#: (``[?]``, ``[.]``), not escapes: llama-cpp-python's schema converter turns ``\\.`` into a
#: grammar its own parser rejects.
DOC2QUERY_SCHEMA_PATTERNS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 10, "maxLength": 260,
                     "pattern": f"^({'|'.join(QUESTION_OPENERS)}) [^?]{{8,250}}[?]$"},
        "scenario": {"type": "string", "minLength": 20, "maxLength": 500,
                     "pattern": "^[A-Z][^?]{20,500}[.]$"},
    },
    "required": ["question", "scenario"],
}

DISTILL_SYSTEM = (
    "You are a careful expert tutor. You reason step by step from evidence and you say "
    "plainly which sources you rely on and which you set aside."
)

DISTILL_USER = """Scenario: {scenario}

Question: {question}

The following {count} documents were retrieved for this question. Only some of them are useful; the others merely look related.

{documents}

Work through the question step by step:
1. For each document, say in one sentence whether it helps with the question and why.
2. Reason from the helpful document(s) to an answer, citing them as [Document N].
3. End with a final line that starts with "Answer:", gives the answer and names the document it rests on, for example "Answer: ... [Document 2]"."""

DOCUMENT_BLOCK = "[Document {label}]\n{text}"

# -- the false-negative judge (NegativeJudge, BM25HardNeg(judge=...)) ----------------------
JUDGE_SYSTEM = (
    "You check training data for a search engine. You decide whether a single document, "
    "read on its own, holds what is needed to answer a question. Judge only by what the "
    "document says, never by what you know yourself."
)

JUDGE_USER = """Question:
{question}

Document:
<<<
{document}
>>>

Could a careful reader answer the question, or its main point, from this document alone, with no other source?
- "no": the document is only on a related topic, lacks the key facts, or would need other sources. Most documents that merely share words with the question are "no".
- "yes": the document itself states the facts, rule or explanation the answer rests on.

First give your reason in one short sentence, then the verdict. Answer with a JSON object and nothing else: {{"reason": "...", "verdict": "no" or "yes"}}"""

# The reason comes first, so that the verdict follows from it rather than the reverse.
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 300},
        "verdict": {"type": "string", "enum": ["no", "yes"]},
    },
    "required": ["reason", "verdict"],
}


# -- Chinese ------------------------------------------------------------------------------
DOC2QUERY_SYSTEM_ZH = (
    "你为各领域的专家出高难度的考题。好的题目要求答题人把几方面的知识结合起来、分几步推理；"
    "它从来不是查一个事实就能答出的题。"
)

DOC2QUERY_USER_ZH = """请阅读下面的参考资料，然后写出：
- "question"：一个问题。回答它需要用到这份资料里的知识，并要经过几步推理。问题要能脱离资料单独看懂：不要出现"文档""材料""本文""这段话""作者"之类的说法。不要问某个定义，也不要问单个事实。
- "scenario"：用两三句话描述一个现实情境，说明什么人在什么情况下会遇到这个问题。

问题和情境都用中文写。只回答一个 JSON 对象，不要写其他内容：{{"question": "...", "scenario": "..."}}

参考资料：
<<<
{document}
>>>"""

# Chinese says in 120 and 180 characters what English says in 600 and 800 (a character is
# about a syllable; many tokenizers spend one or two tokens on it): both fit the reply budget.
DOC2QUERY_SCHEMA_ZH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 6, "maxLength": 120},
        "scenario": {"type": "string", "minLength": 10, "maxLength": 180},
    },
    "required": ["question", "scenario"],
}

#: DOC2QUERY_SCHEMA_ZH with patterns, as DOC2QUERY_SCHEMA_PATTERNS does for English: a
#: question opens with a Chinese character (CJK Unified Ideographs) and ends with its only
#: question mark (full-width, or ASCII); a scenario opens with a Chinese character or an
#: opening quote or title mark and ends with a full stop. Plain character classes only, so
#: the embedded model's grammar and llama.cpp's schema converter take them.
DOC2QUERY_SCHEMA_ZH_PATTERNS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 6, "maxLength": 120,
                     "pattern": "^[\u4e00-\u9fff][^?\uff1f]{4,118}[\uff1f?]$"},
        "scenario": {"type": "string", "minLength": 10, "maxLength": 180,
                     "pattern": "^[\u4e00-\u9fff\u201c\u300a][^?\uff1f]{8,178}[\u3002]$"},
    },
    "required": ["question", "scenario"],
}

DISTILL_SYSTEM_ZH = (
    "你是一位严谨的专家导师。你依据证据一步一步地推理，并且直接说明哪些资料可以采信、"
    "哪些资料应当舍弃。"
)

DISTILL_USER_ZH = """情境：{scenario}

问题：{question}

下面是为这个问题检索到的 {count} 篇文档。其中只有一部分真正有用，其余的只是看上去相关。

{documents}

请用中文一步一步地解答这个问题：
1. 逐篇说明该文档对回答问题有没有帮助，以及为什么，每篇一句话。
2. 依据有帮助的文档推理出答案，引用时写作 [文档 N]。
3. 最后单独一行，以"答案："开头，写出答案并注明所依据的文档，例如"答案：……[文档 2]"。"""

DOCUMENT_BLOCK_ZH = "[文档 {label}]\n{text}"

JUDGE_SYSTEM_ZH = (
    "你负责检查搜索引擎的训练数据：判断一篇文档单独拿出来读，是否包含回答某个问题所需的内容。"
    "只依据文档里写了什么来判断，不要用你自己掌握的知识补充。"
)

# The verdict stays "yes"/"no" (the schema's enum, parsed the same way in every language);
# the reason is asked for in Chinese.
JUDGE_USER_ZH = """问题：
{question}

文档：
<<<
{document}
>>>

一个认真的读者只读这篇文档、不借助任何其他资料，能不能回答这个问题，或者至少答出它的要点？
- "no"：文档只是话题相近，缺少关键的事实，或者还要参考别的资料才能回答。只是和问题有几个相同字词的文档，大多属于 "no"。
- "yes"：文档本身就写明了答案所依据的事实、规定或解释。

先用一句简短的中文说明理由，再给出结论。只回答一个 JSON 对象，不要写其他内容：{{"reason": "...", "verdict": "no" 或 "yes"}}"""


@dataclass(frozen=True)
class Prompts:
    """Everything a stage sends in one language."""

    language: str
    doc2query_system: str
    doc2query_user: str
    doc2query_schema: dict[str, Any]
    #: the schema with patterns that hold a small model to a real question and scenario
    doc2query_schema_patterns: dict[str, Any]
    distill_system: str
    distill_user: str
    document_block: str
    #: how a document is named in the prompt (and in ``reasoning_positive_label``)
    document_label: str
    #: the false-negative judge's system and user prompts (the schema is JUDGE_SCHEMA)
    judge_system: str
    judge_user: str


PROMPTS: dict[str, Prompts] = {
    "en": Prompts("en", DOC2QUERY_SYSTEM, DOC2QUERY_USER, DOC2QUERY_SCHEMA,
                  DOC2QUERY_SCHEMA_PATTERNS, DISTILL_SYSTEM, DISTILL_USER, DOCUMENT_BLOCK,
                  "Document {label}", JUDGE_SYSTEM, JUDGE_USER),
    "zh": Prompts("zh", DOC2QUERY_SYSTEM_ZH, DOC2QUERY_USER_ZH, DOC2QUERY_SCHEMA_ZH,
                  DOC2QUERY_SCHEMA_ZH_PATTERNS, DISTILL_SYSTEM_ZH, DISTILL_USER_ZH, DOCUMENT_BLOCK_ZH,
                  "文档 {label}", JUDGE_SYSTEM_ZH, JUDGE_USER_ZH),
}


def prompts_for(language: str) -> Prompts:
    """The prompt set of ``language`` ("en" or "zh")."""
    return PROMPTS[language]


def document_language(text: str, setting: str) -> str:
    """The language to write in for a document: ``setting``, or for ``"auto"`` the one its
    script mix says (:func:`rare.text.detect_language`)."""
    if setting != "auto":
        return setting
    from rare.text import detect_language

    return detect_language([text])[0]


def distill_messages(scenario: str, question: str, documents: list[str],
                     language: str = "en") -> list[dict[str, str]]:
    """The chat ReasonDistill sends: system, then the user prompt with the documents
    labelled (``[Document 1]`` .., ``[文档 1]`` ..) in the given order (as the teacher saw
    them)."""
    prompts = prompts_for(language)
    blocks = [prompts.document_block.format(label=n, text=doc)
              for n, doc in enumerate(documents, 1)]
    user = prompts.distill_user.format(scenario=scenario, question=question,
                                       count=len(documents), documents="\n\n".join(blocks))
    return [{"role": "system", "content": prompts.distill_system},
            {"role": "user", "content": user}]
