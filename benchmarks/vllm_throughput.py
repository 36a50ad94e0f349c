"""vLLM in process against vLLM behind its OpenAI-compatible server: the same prompts,
the same model, the same engine settings, one path after the other.

* in process: ``LocalModelLLMServing`` hands the whole batch to ``LLM.generate`` in one call;
* server: ``vllm.entrypoints.openai.api_server`` on 127.0.0.1, driven by
  ``APILLMServing_request`` with ``max_workers`` requests in flight (8 by default).

Each path answers ``--prompts`` chat requests (a two-sentence summary of a CACM abstract,
greedy, at most ``--max-tokens`` tokens) with the response cache off, after the engine is
up (load time is printed apart). Greedy decoding makes the two paths write the same
tokens, so requests/s and tokens/s compare like with like. Run it on a quiet machine
(``make bench-vllm`` sets up the environment and the model)::

    python benchmarks/vllm_throughput.py --model .venv-vllm/models/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACM = REPO.parent / "shared" / "data" / "cacm" / "cacm.jsonl"


def prompts(n: int) -> list[str]:
    out = []
    with CACM.open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line).get("contents", "")
            if len(text) > 300:
                out.append("Summarize this abstract in two sentences.\n\n" + text[:900])
            if len(out) == n:
                break
    return out


def requests(texts: list[str], max_tokens: int):  # type: ignore[no-untyped-def]
    from rare import ChatRequest

    return [ChatRequest.from_prompt(t, max_tokens=max_tokens, temperature=0.0) for t in texts]


def report(name: str, seconds: float, replies) -> dict[str, float]:  # type: ignore[no-untyped-def]
    ok = [r for r in replies if r.ok]
    tokens = sum(r.completion_tokens for r in ok)
    row = {"seconds": round(seconds, 2), "ok": len(ok), "requests_per_s": len(ok) / seconds,
           "tokens_per_s": tokens / seconds, "completion_tokens": tokens}
    print(f"{name:<34} {len(ok):>3} ok  {seconds:7.1f} s  {row['requests_per_s']:6.2f} req/s  "
          f"{row['tokens_per_s']:7.1f} tok/s  ({tokens} tokens)", flush=True)
    return row


def in_process(model: str, texts: list[str], args: argparse.Namespace) -> dict[str, float]:
    from rare.serving import LocalModelLLMServing

    serving = LocalModelLLMServing(hf_model_name_or_path=model,
                                   vllm_max_model_len=args.max_model_len,
                                   vllm_max_tokens=args.max_tokens)
    serving.use_cache(False)
    start = time.perf_counter()
    serving.start_serving()
    print(f"in process: engine up in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    replies = serving.generate(requests(texts, args.max_tokens))
    row = report("in process (one batch)", time.perf_counter() - start, replies)
    serving.close()
    return row


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def through_server(model: str, texts: list[str], args: argparse.Namespace) -> dict[str, float]:
    from rare.serving import APILLMServing_request

    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len",
           str(args.max_model_len), "--enforce-eager", "--seed", "42"]
    start = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the vLLM server exited with {server.returncode}: {cmd}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        print(f"server: up in {time.perf_counter() - start:.1f} s", flush=True)
        serving = APILLMServing_request(
            api_url=f"http://127.0.0.1:{port}/v1/chat/completions", model_name=model,
            max_workers=args.max_workers, max_tokens=args.max_tokens, api_key="none")
        serving.use_cache(False)
        start = time.perf_counter()
        replies = serving.generate(requests(texts, args.max_tokens))
        row = report(f"server, max_workers={args.max_workers}", time.perf_counter() - start,
                     replies)
        serving.close()
        return row
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory (Hugging Face format)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--max-workers", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    texts = prompts(args.prompts)
    rows = {"in_process": in_process(args.model, texts, args),
            "server": through_server(args.model, texts, args)}
    ratio = rows["in_process"]["tokens_per_s"] / rows["server"]["tokens_per_s"]
    print(f"in process / server, tokens per second: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
