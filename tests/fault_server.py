"""A chat-completions server on 127.0.0.1 that we control: deterministic replies, injected faults.

It speaks enough of the OpenAI protocol (``POST /v1/chat/completions``) for the openai client,
and replies by a hash of the request, so a request always gets the same reply:

* a Doc2Query request (it asks for a JSON object) gets ``{"question": ..., "scenario": ...}``
  built from words of the document, so BM25 has something to match;
* a ReasonDistill request gets a few lines of reasoning ending in ``Answer: ...``;
* anything else gets an echo.

With ``upstream`` set it is a proxy instead: requests go to a real server (llama.cpp) and the
faults apply to its replies.

Faults come from rules, tried in order; the first that matches a request and still has budget
fires. A rule is a dict:

    {"fault": "status", "status": 429, "headers": {"Retry-After": "1"},
     "match": "substring of the messages", "kind": "doc2query" | "distill",
     "times": 2, "per_prompt": true}

``times`` (default: always) is how many matching requests the rule fires on, counted per
distinct request when ``per_prompt``. Faults:

    status         an HTTP error: ``status`` (default 500), optional ``headers``
    sleep          wait ``seconds`` (at most 30), then reply normally if the client is still there
    malformed      200, application/json, a body cut in the middle
    non_json       200, text/html
    empty_choices  200, ``"choices": []``
    truncate       200, half of the reply, ``finish_reason: "length"``
    useless        200, "I cannot help with that."
    ungrounded     200, a reasoning whose final answer cites a negative, not the positive
    answer         200, a reasoning whose final answer says ``answer`` (citing the positive)
    no_content     200, ``message.content`` null
    drop           close the connection without a reply
    none           a normal reply (a rule that only uses up its ``times``)

Calls are counted (in total, by fault, by kind) and logged (each call with its kind, fault,
seed, temperature, ReasonDistill scenario, a hash of the user message, and the reply);
``GET /stats`` returns the counts and the log,
``POST /admin/rules`` replaces the rules (``{"rules": [...], "delay": s}``) and resets the
counts, ``POST /admin/reset`` resets the counts. ``delay`` seconds are waited before
every reply. A call whose client hung up before the reply (timeout, killed process) is logged
as ``abandoned``.

Run it in a thread (:class:`FaultServer`) or as a process that outlives a killed client:
``python tests/fault_server.py --port-file F [--log F] [--delay S] [--rules JSON]``
(:class:`FaultServerProcess`). The process stops by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MAX_SLEEP = 30.0
WORDS = ("how", "why", "what", "which", "when")


# -- replies -------------------------------------------------------------------------------
def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def request_kind(body: dict[str, Any]) -> str:
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    if "response_format" in body or "Answer with a JSON object" in text:
        return "doc2query"
    if 'starts with "Answer:"' in text or "step by step" in text:
        return "distill"
    return "other"


def _document_words(text: str, n: int) -> list[str]:
    start, end = text.find("<<<"), text.rfind(">>>")
    doc = text[start + 3:end] if 0 <= start < end else text
    words = [w.strip(".,;:()[]\"'") for w in doc.split()]
    return [w for w in words if len(w) > 3][:n] or ["nothing"]


def scenario_marker(document: str) -> str:
    """The start of the scenario the server writes for ``document``: it appears in that
    document's ReasonDistill prompt (``"Scenario: " + marker``) and in no other."""
    return "An engineer reviewing " + " ".join(_document_words(document, 3))


def user_digest(messages: list[dict[str, Any]]) -> str:
    """A hash of the last user message (to match an exported prompt with the one sent)."""
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    return hashlib.sha256((users[-1] if users else "").encode("utf-8")).hexdigest()


def scenario_line(body: dict[str, Any]) -> str | None:
    """The ``Scenario: ...`` line of a ReasonDistill request (names its row), else None."""
    for message in body.get("messages", []):
        match = re.search(r"^Scenario: (.*)$", str(message.get("content", "")), re.MULTILINE)
        if match:
            return match.group(1)
    return None


def positive_label(prompt: str, wrong: bool = False) -> int:
    """The number of the document in a ReasonDistill ``prompt`` whose words start the
    scenario this server wrote for it (its positive), else 1; with ``wrong``, another one."""
    blocks = re.findall(r"^\[Document (\d+)\]\n(.*?)(?=^\[Document \d+\]$|\Z)", prompt,
                        re.MULTILINE | re.DOTALL)
    found = 1
    for number, text in blocks:
        if scenario_marker(text) in prompt:
            found = int(number)
            break
    if wrong:
        return 2 if found == 1 else 1
    return found


def reply_text(body: dict[str, Any]) -> str:
    """The deterministic reply to a request."""
    kind = request_kind(body)
    h = digest(body)
    messages = body.get("messages", [])
    user = str(messages[-1].get("content", "")) if messages else ""
    if kind == "doc2query":
        words = _document_words(user, 12)
        question = (f"{WORDS[int(h[0], 16) % len(WORDS)].capitalize()} would "
                    f"{' '.join(words[:6])} change if {' '.join(words[6:])} were reversed "
                    f"(case {h[:8]})?")
        scenario = (f"An engineer reviewing {' '.join(words[:3])} must decide what to do next. "
                    f"Ticket {h[8:16]}.")
        return json.dumps({"question": question, "scenario": scenario})
    if kind == "distill":
        return (f"Step 1: Document 1 is read and weighed against the question ({h[:6]}).\n"
                f"Step 2: The helpful document supports the conclusion ({h[6:12]}).\n"
                f"Step 3: The other documents only look related and are set aside.\n"
                f"Answer: {h[12:24]} [Document {positive_label(user)}]")
    return f"echo {h[:16]}: {user[:80]}"


def completion_body(body: dict[str, Any], text: str | None, finish: str = "stop",
                    choices: bool = True) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return {
        "id": "chatcmpl-" + digest(body)[:12], "object": "chat.completion",
        "created": 1700000000, "model": body.get("model", "fault-server"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish}] if choices else [],
        "usage": {"prompt_tokens": prompt // 4, "completion_tokens": len(text or "") // 4,
                  "total_tokens": prompt // 4 + len(text or "") // 4},
    }


# -- the server ----------------------------------------------------------------------------
class State:
    """Rules, counters and the call log, shared by the handler threads."""

    def __init__(self, rules: list[dict[str, Any]] | None = None, delay: float = 0.0,
                 log_path: str | None = None, upstream: str | None = None) -> None:
        self.lock = threading.Lock()
        self.delay = delay
        self.upstream = upstream
        self.log_path = log_path
        self.set_rules(rules or [], delay)

    def set_rules(self, rules: list[dict[str, Any]], delay: float | None = None) -> None:
        with self.lock:
            self.rules = [dict(r) for r in rules]
            if delay is not None:
                self.delay = float(delay)
            self._reset()

    def reset(self) -> None:
        with self.lock:
            self._reset()

    def _reset(self) -> None:
        self.fired: list[dict[str, int]] = [{} for _ in self.rules]
        self.calls = 0
        self.by_fault: dict[str, int] = {}
        self.by_kind: dict[str, int] = {}
        self.abandoned = 0
        self.log: list[dict[str, Any]] = []

    def choose(self, body: dict[str, Any], kind: str, key: str) -> dict[str, Any] | None:
        """Count the call and pick the rule that fires on it (None: a normal reply)."""
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        with self.lock:
            self.calls += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            chosen = None
            for n, rule in enumerate(self.rules):
                if rule.get("kind") not in (None, kind):
                    continue
                if rule.get("match") is not None and rule["match"] not in text:
                    continue
                counter = key if rule.get("per_prompt") else ""
                used = self.fired[n].get(counter, 0)
                if rule.get("times") is not None and used >= rule["times"]:
                    continue
                self.fired[n][counter] = used + 1
                chosen = rule
                break
            fault = chosen["fault"] if chosen else "ok"
            self.by_fault[fault] = self.by_fault.get(fault, 0) + 1
            return chosen

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)
            self.abandoned += bool(entry.get("abandoned"))
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"calls": self.calls, "by_fault": dict(self.by_fault),
                    "by_kind": dict(self.by_kind), "abandoned": self.abandoned,
                    "log": list(self.log)}


def client_gone(sock: socket.socket) -> bool:
    """Whether the client closed its end (a request is fully read, so any EOF means gone)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # quiet: tests read /stats

    # -- plumbing --------------------------------------------------------------------------
    def _send(self, status: int, payload: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    # -- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the base's name
        if self.path.rstrip("/") == "/stats":
            self._json(200, self.server.state.stats())
        elif self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fault-server",
                                                         "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - the base's name
        state = self.server.state
        try:
            body = self._body()
        except ValueError:
            self._json(400, {"error": {"message": "the request body is not JSON"}})
            return
        path = self.path.rstrip("/")
        if path == "/admin/rules":
            state.set_rules(body.get("rules", []), body.get("delay"))
            self._json(200, {"ok": True})
        elif path == "/admin/reset":
            state.reset()
            self._json(200, {"ok": True})
        elif path.endswith("/chat/completions"):
            self._chat(body)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _chat(self, body: dict[str, Any]) -> None:
        state = self.server.state
        t0 = time.time()
        kind = request_kind(body)
        key = digest(body)
        rule = state.choose(body, kind, key)
        fault = rule["fault"] if rule else "ok"
        entry: dict[str, Any] = {"t0": t0, "key": key, "kind": kind, "fault": fault,
                                 "abandoned": False, "seed": body.get("seed"),
                                 "temperature": body.get("temperature"),
                                 "scenario": scenario_line(body),
                                 "user_sha": user_digest(body.get("messages", []))}
        try:
            if state.delay:
                time.sleep(state.delay)
            if fault == "sleep":
                time.sleep(min(float(rule.get("seconds", 1.0)), MAX_SLEEP))  # type: ignore[union-attr]
            if client_gone(self.connection):
                entry["abandoned"] = True
                self.close_connection = True
                return
            self._entry = entry
            self._reply(body, rule)
        except OSError:
            entry["abandoned"] = True
            self.close_connection = True
        finally:
            entry["t1"] = time.time()
            state.record(entry)

    def _upstream_text(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.server.state.upstream.rstrip("/") + "/chat/completions",  # type: ignore[union-attr]
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"}, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=120) as resp:
            return json.loads(resp.read())

    def _reply(self, body: dict[str, Any], rule: dict[str, Any] | None) -> None:
        fault = rule["fault"] if rule else "ok"
        if fault == "status":
            assert rule is not None
            status = int(rule.get("status", 500))
            self._json(status, {"error": {"message": rule.get("message",
                                                              f"injected HTTP {status}"),
                                          "type": "injected", "code": status}},
                       headers=rule.get("headers"))
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "malformed":
            payload = json.dumps(completion_body(body, reply_text(body))).encode("utf-8")
            self._send(200, payload[: len(payload) // 2])
            return
        if fault == "non_json":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            return
        if fault == "empty_choices":
            self._json(200, completion_body(body, None, choices=False))
            return
        if self.server.state.upstream:
            try:
                out = self._upstream_text(body)
            except urllib.error.HTTPError as exc:  # relay the upstream's own error
                self._send(exc.code, exc.read(), exc.headers.get("Content-Type",
                                                                 "application/json"))
                return
            except (OSError, ValueError) as exc:
                self._json(502, {"error": {"message": f"upstream failed: {exc}"}})
                return
            text = out["choices"][0]["message"].get("content") or ""
            finish = out["choices"][0].get("finish_reason") or "stop"
        else:
            text, finish = reply_text(body), "stop"
        if fault == "truncate":
            text, finish = text[: max(1, len(text) // 2)], "length"
        elif fault == "useless":
            text, finish = "I cannot help with that.", "stop"
        elif fault == "answer":  # the final answer says rule["answer"], same citation
            assert rule is not None
            text = re.sub(r"^Answer: \S+", lambda _: f"Answer: {rule['answer']}", text,
                          flags=re.MULTILINE)
        elif fault == "ungrounded":  # the final answer cites a negative, not the positive
            messages = body.get("messages", [])
            user = str(messages[-1].get("content", "")) if messages else ""
            text = re.sub(r"\[Document \d+\]$", f"[Document {positive_label(user, True)}]",
                          text)
        elif fault == "no_content":
            self._json(200, completion_body(body, None))
            return
        self._entry.update(reply=text, finish=finish)
        self._json(200, completion_body(body, text, finish))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, state: State, port: int = 0) -> None:
        super().__init__((HOST, port), Handler)
        self.state = state


# -- test-side handles ---------------------------------------------------------------------
def _http(method: str, url: str, payload: Any = None, timeout: float = 10.0) -> Any:
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as resp:
        return json.loads(resp.read())


class _Control:
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/completions"

    def stats(self) -> dict[str, Any]:
        return _http("GET", f"http://{HOST}:{self.port}/stats")

    def set_rules(self, rules: list[dict[str, Any]], delay: float | None = None) -> None:
        _http("POST", f"http://{HOST}:{self.port}/admin/rules", {"rules": rules, "delay": delay})

    def reset(self) -> None:
        _http("POST", f"http://{HOST}:{self.port}/admin/reset", {})


class FaultServer(_Control):
    """The server on a thread of this process: ``with FaultServer(rules) as server: ...``."""

    def __init__(self, rules: list[dict[str, Any]] | None = None, delay: float = 0.0,
                 upstream: str | None = None) -> None:
        self.state = State(rules, delay, upstream=upstream)
        self.httpd = Server(self.state)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class FaultServerProcess(_Control):
    """The server as a child process (it outlives a client we SIGKILL)."""

    def __init__(self, workdir: Path, rules: list[dict[str, Any]] | None = None,
                 delay: float = 0.0, max_seconds: float = 600.0,
                 upstream: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port_file = workdir / "fault_server.port"
        self.log_file = workdir / "fault_server.log"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--port-file", str(self.port_file),
             "--log", str(self.log_file), "--delay", str(delay),
             "--rules", json.dumps(rules or []), "--max-seconds", str(max_seconds),
             *(["--upstream", upstream] if upstream else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fault server did not start: "
                                   + (self.proc.stderr.read().decode()[-2000:]
                                      if self.proc.stderr else ""))
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())

    def __enter__(self) -> FaultServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True, help="written once the port is bound")
    parser.add_argument("--log", help="JSONL file with one line per call")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--rules", default="[]", help="JSON list of fault rules")
    parser.add_argument("--upstream", help="proxy to this OpenAI-compatible base URL")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop after this long whatever happens")
    args = parser.parse_args(argv)
    state = State(json.loads(args.rules), args.delay, args.log, args.upstream)
    httpd = Server(state, args.port)
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(httpd.server_address[1]))
    os.replace(tmp, args.port_file)  # atomic: a reader never sees half a number

    def stop(*_: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(args.max_seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        httpd.serve_forever(poll_interval=0.05)
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
