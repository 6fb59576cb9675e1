"""A minimal OpenAI-compatible ``/v1/completions`` server on loopback (aiohttp, in a thread)
that serves a real transformers model's prompt log-probs, for the HTTP scorer's tests.

It answers the two request shapes the scorer uses — legacy ``echo`` + ``logprobs`` (with
``tokens``, ``token_logprobs``, ``text_offset``) and vLLM's ``prompt_logprobs`` — and can be
told to behave like servers the scorer must cope with or refuse: no prompt log-probs at all,
``max_tokens: 0`` refused, a context limit, an API key.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from aiohttp import web


@dataclass
class LogprobServer:
    model: Any
    tokenizer: Any
    modes: tuple[str, ...] = ("echo", "prompt_logprobs")  # () = never returns log-probs
    allow_zero_max_tokens: bool = True
    context: int | None = None
    api_key: str | None = None
    model_name: str = "tiny-gpt2"
    fail_next: int = 0  # answer this many requests with 503 first
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- the model --------------------------------------------------------------------

    def _prompt(self, prompt: str) -> tuple[list[int], list[str], list[int], list[float | None]]:
        encoded = self.tokenizer(prompt, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        offsets = [start for start, _ in encoded["offset_mapping"]]
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
            logp = logits.log_softmax(-1)
        values: list[float | None] = [None]
        values += [float(logp[t - 1, ids[t]]) for t in range(1, len(ids))]
        self._next = int(logp[-1].argmax())
        return ids, self.tokenizer.convert_ids_to_tokens(ids), offsets, values

    def _choice(self, index: int, prompt: str, body: dict[str, Any]) -> dict[str, Any]:
        ids, tokens, offsets, values = self._prompt(prompt)
        choice: dict[str, Any] = {"index": index, "text": "", "logprobs": None,
                                  "finish_reason": "length"}  # fmt: skip
        max_tokens = int(body.get("max_tokens", 16))
        if body.get("echo") and body.get("logprobs") is not None and "echo" in self.modes:
            choice["text"] = prompt
            if max_tokens > 0:  # one generated (greedy) token after the prompt
                tokens = [*tokens, self.tokenizer.convert_ids_to_tokens(self._next)]
                values = [*values, -0.5]
                offsets = [*offsets, len(prompt)]
            choice["logprobs"] = {
                "tokens": tokens,
                "token_logprobs": values,
                "text_offset": offsets,
                "top_logprobs": [None]
                + [{t: v} for t, v in zip(tokens[1:], values[1:], strict=True)],
            }
        if body.get("prompt_logprobs") is not None and "prompt_logprobs" in self.modes:
            choice["prompt_logprobs"] = [None] + [
                {str(i): {"logprob": v, "rank": 1, "decoded_token": t}}
                for i, t, v in zip(ids[1:], tokens[1:], values[1:], strict=True)
            ]
        return choice

    # --- HTTP ---------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.Response:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "invalid API key"}}, status=401)
        body = await request.json()
        self.requests.append(body)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        if body.get("model") != self.model_name:
            return web.json_response(
                {"error": {"message": f"The model `{body.get('model')}` does not exist."}},
                status=404,
            )
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if int(body.get("max_tokens", 16)) < 1 and not self.allow_zero_max_tokens:
            return web.json_response({"error": {"message": "max_tokens must be at least 1"}},
                                     status=400)  # fmt: skip
        for prompt in prompts:
            n = len(self.tokenizer(prompt)["input_ids"])
            if self.context is not None and n > self.context:
                message = (
                    f"This model's maximum context length is {self.context} tokens. However, "
                    f"you requested {n} tokens in the prompt."
                )
                return web.json_response({"error": {"message": message}}, status=400)
        choices = [self._choice(i, p, body) for i, p in enumerate(prompts)]
        return web.json_response({"object": "text_completion", "model": self.model_name,
                                  "choices": choices})  # fmt: skip

    def __enter__(self) -> LogprobServer:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="logprob-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the loopback completions server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
