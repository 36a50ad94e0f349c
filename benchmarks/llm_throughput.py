"""LLM throughput at real concurrency: achieved / ideal requests per second.

A fake OpenAI-compatible endpoint answers every chat completion after a fixed latency
(0.3 s by default). It runs in a process of its own on plain asyncio streams (keep-alive
HTTP/1.1, no parsing beyond the headers), so it is not the bottleneck: the script first
measures its capacity with a bare asyncio client at zero latency and prints it.

Then Doc2Query requests (the stage's own prompt, schema and reply length, one per CACM
document, no two alike) go through ``APILLMServing_request`` and the batch executor at
each ``max_workers``, with the step's journal on and the response cache off, as in
``rare run --no-cache`` (``--cache`` turns a new one on). Ideal throughput is
``max_workers / latency``; ``--http-client`` picks the serving's transport (``auto``: the
openai client up to 16 in flight, the lean ``asyncio`` client above). A batch is
``--waves`` times ``max_workers`` requests, after one warm-up wave that opens the
connections. Run it on a quiet machine::

    python benchmarks/llm_throughput.py [--workers 20,64,256] [--latency 0.3] [--waves 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACM = REPO.parent / "shared" / "data" / "cacm" / "cacm.jsonl"

_REPLY = {"question": "Why would a compiler that reorders loads change the result of this "
                      "program on a machine with a weak memory model?",
          "scenario": "An engineer porting a numerical library to a new architecture sees "
                      "results that differ in the last digits and must find out why."}


def _response_bytes() -> bytes:
    body = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
        "model": "bench", "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": json.dumps(_REPLY)}}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 60, "total_tokens": 460},
    }).encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode()
    return head + body


# -- the fake endpoint -----------------------------------------------------------------------
class _Reply(asyncio.Protocol):
    """One connection: each request (headers, then Content-Length bytes) is answered with
    the same reply ``latency`` seconds after it arrived; keep-alive, HTTP/1.1."""

    def __init__(self, latency: float, reply: bytes) -> None:
        self.latency = latency
        self.reply = reply
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            self.buffer = self.buffer[end + 4 + length:]
            if self.latency:
                loop.call_later(self.latency, self._send)
            else:
                self._send()

    def _send(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(port_queue: Any, latency: float) -> None:
    """The endpoint's process: bind a free port, report it, answer until killed."""
    async def main() -> None:
        reply = _response_bytes()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Reply(latency, reply), "127.0.0.1", 0,
                                          backlog=4096)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Endpoint:
    """The fake endpoint in a child process: ``with Endpoint(0.3) as url: ...``."""

    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.queue: Any = ctx.Queue()
        self.proc = ctx.Process(target=serve, args=(self.queue, latency), daemon=True)

    def __enter__(self) -> str:
        self.proc.start()
        port = self.queue.get(timeout=30)
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    def cpu_seconds(self) -> float:
        """CPU time the endpoint's process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join(10)


# -- a bare client, to measure the endpoint's own capacity -----------------------------------
async def _bare_client(port: int, connections: int, seconds: float) -> int:
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
               b"application/json\r\nContent-Length: 2\r\n\r\n{}")
    done = [0]
    stop = time.perf_counter() + seconds

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.split(b"\r\n")
                          if line[:15].lower() == b"content-length:")
            await reader.readexactly(length)
            done[0] += 1
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return done[0]


def endpoint_capacity(connections: int = 64, seconds: float = 3.0) -> float:
    """Replies per second the endpoint gives at zero latency to a bare asyncio client."""
    with Endpoint(0.0) as url:
        port = int(url.split(":")[2].split("/")[0])
        start = time.perf_counter()
        done = asyncio.run(_bare_client(port, connections, seconds))
        return done / (time.perf_counter() - start)


# -- the measurement -------------------------------------------------------------------------
def doc2query_requests(count: int) -> list[Any]:
    from rare_stages.doc2query import Doc2Query

    from rare import Completion, LLMServing

    class _Tokens(LLMServing):  # only for the stage's request builder
        def complete(self, request: Any) -> Completion:
            raise NotImplementedError

    docs = [json.loads(line)["contents"] for line in CACM.open(encoding="utf-8")]
    stage = Doc2Query(_Tokens())
    return [stage.build_request(f"{docs[i % len(docs)]}\n(copy {i // len(docs)})", 0)
            for i in range(count)]


def measure(endpoint: Endpoint, url: str, workers: int, latency: float, waves: int,
            journal_dir: Path, cache: bool = False, http_client: str = "auto"
            ) -> dict[str, Any]:
    from rare_openai import APILLMServing_request  # (not through the registry: no plugins)

    from rare.llm import Journal, ResponseCache

    count = waves * workers
    requests = doc2query_requests(count + workers)
    serving = APILLMServing_request(api_url=url, model_name="bench", max_workers=workers,
                                    max_retries=0, timeout=60.0,
                                    structured_output="json_schema", http_client=http_client)
    transport = serving.transport
    serving.use_cache(ResponseCache(journal_dir / f"cache{workers}") if cache else False)
    try:
        serving.generate(requests[count:])  # warm-up: the client and its connections
        with Journal(journal_dir / f"w{workers}.journal") as journal:
            start = time.perf_counter()
            cpu, server_cpu = time.process_time(), endpoint.cpu_seconds()
            replies = serving.generate(requests[:count], journal=journal)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            server_cpu = endpoint.cpu_seconds() - server_cpu
    finally:
        serving.close()
    failed = sum(not r.ok for r in replies)
    ideal = workers / latency
    return {"max_workers": workers, "transport": transport, "cache": cache,
            "requests": count, "failed": failed,
            "seconds": round(elapsed, 3), "req_per_s": round(count / elapsed, 1),
            "ideal_req_per_s": round(ideal, 1), "ratio": round(count / elapsed / ideal, 3),
            "client_cpu_ms_per_request": round(cpu * 1000 / count, 3),
            "endpoint_cpu_ms_per_request": round(server_cpu * 1000 / count, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="20,64,256")
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--cache", action="store_true",
                        help="with the response cache on (a new one), as `rare run` has it")
    parser.add_argument("--http-client", default="auto",
                        choices=["auto", "openai", "aiohttp", "asyncio"],
                        help="the serving's HTTP transport (default: auto)")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]

    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs"
          + ("  (busy machine: figures will be low)" if load > 1.2 else ""))
    capacity = endpoint_capacity(connections=min(64, max(workers)))
    need = max(workers) / args.latency
    print(f"fake endpoint capacity: {capacity:,.0f} replies/s at zero latency "
          f"(the most asked below: {need:,.0f}/s)")
    rows = []
    endpoint = Endpoint(args.latency)
    with endpoint as url, tempfile.TemporaryDirectory() as tmp:
        for w in workers:
            row = measure(endpoint, url, w, args.latency, args.waves, Path(tmp), args.cache,
                          args.http_client)
            rows.append(row)
            print(f"max_workers {w:4d} ({row['transport']}): {row['requests']:5d} requests in "
                  f"{row['seconds']:6.2f} s"
                  f" = {row['req_per_s']:7.1f}/s, ideal {row['ideal_req_per_s']:7.1f}/s, "
                  f"ratio {row['ratio']:.3f} (failed {row['failed']}; CPU a request: client "
                  f"{row['client_cpu_ms_per_request']:.3f} ms, endpoint "
                  f"{row['endpoint_cpu_ms_per_request']:.3f} ms)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"capacity": capacity, "load": load,
                                               "latency": args.latency, "rows": rows},
                                              indent=2))
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
