"""The prompts of the LLM stages. Written for rare-synth; kept short so small models cope."""

from __future__ import annotations

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

DOC2QUERY_SCHEMA = {
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
DOC2QUERY_SCHEMA_PATTERNS = {
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


def distill_messages(scenario: str, question: str,
                     documents: list[str]) -> list[dict[str, str]]:
    """The chat ReasonDistill sends: system, then the user prompt with the documents
    labelled ``[Document 1]`` .. in the given order (as the teacher saw them)."""
    blocks = [DOCUMENT_BLOCK.format(label=n, text=doc) for n, doc in enumerate(documents, 1)]
    user = DISTILL_USER.format(scenario=scenario, question=question, count=len(documents),
                               documents="\n\n".join(blocks))
    return [{"role": "system", "content": DISTILL_SYSTEM}, {"role": "user", "content": user}]
