"""The prompts of the LLM stages. Written for rare-synth; kept short so small models cope."""

DOC2QUERY_SYSTEM = (
    "You design hard exam questions for experts. A good question forces the reader to "
    "combine several pieces of knowledge and reason in steps; it is never a trivia lookup."
)

DOC2QUERY_USER = """Read the reference material below. Then write:
- "question": one question whose answer needs the knowledge in this material and several steps of reasoning. It must be understandable on its own: never mention "the document", "the text", "the passage" or "the author". Do not ask for a definition or a single fact.
- "scenario": two or three sentences describing a realistic situation in which someone faces this question.

Answer with a JSON object and nothing else: {{"question": "...", "scenario": "..."}}

Reference material:
<<<
{document}
>>>"""

DOC2QUERY_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 10, "maxLength": 600},
        "scenario": {"type": "string", "minLength": 10, "maxLength": 800},
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
3. End with a final line that starts with "Answer:"."""

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
