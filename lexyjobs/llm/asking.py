"""One request, asked the way the job says: from the cache when it holds the answer, else within
the run's spending limits (``RunSpend.admit``), then counted (``RunSpend.record``) and stored in
the cache."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.kinds import expand_env
from lexyjobs.llm import chat
from lexyjobs.llm.cache import Cache
from lexyjobs.llm.calls import Endpoint, send
from lexyjobs.llm.spend import RunSpend


@dataclass
class Asker:
    ctx: RunContext
    endpoint: Endpoint
    spend: RunSpend
    cache: Cache

    async def chat(self, body: dict[str, Any], *, stream: bool) -> chat.Answer:
        key = self.cache.key(body) if self.cache.on else None
        if key is not None:
            hit = (await asyncio.to_thread(self.cache.get, [key])).get(key)
            if hit is not None:
                answer = chat.Answer(hit["text"], hit["model"], hit["finish_reason"], (0, 0), 0, cached=True)
                if stream:  # the log shows the answer as a streamed one would have
                    self.ctx.write(self.endpoint.mask.text(answer.text or "") + "\n")
                await self.spend.record(answer.model, None, [], cached=True)
                return answer
        taken = await self.spend.admit(body)
        answer = await chat.complete(self.ctx, self.endpoint, body, stream=stream)
        await self.spend.record(answer.model, answer.usage, taken)
        if key is not None and answer.text is not None:
            stored = {"text": answer.text, "model": answer.model, "finish_reason": answer.finish_reason}
            await asyncio.to_thread(self.cache.put, {key: stored})
        return answer

    async def embed(self, config: Mapping[str, Any],
                    texts: Sequence[str]) -> tuple[list[list[float]], tuple[int, int] | None, str]:
        """The vectors of ``texts`` in order (those in the cache from it), the tokens used
        (prompt, 0) and the model named."""
        model = expand_env(config["model"])
        base: dict[str, Any] = {"model": model}
        if "dimensions" in config:
            base["dimensions"] = config["dimensions"]
        keys = [self.cache.key({**base, "input": text}) for text in texts] if self.cache.on else []
        hits = await asyncio.to_thread(self.cache.get, keys) if keys else {}
        missing = [i for i in range(len(texts)) if not keys or keys[i] not in hits]
        vectors: dict[int, list[float]] = {i: hits[keys[i]] for i in range(len(texts)) if keys and keys[i] in hits}
        if not missing:
            await self.spend.record(model, None, [], cached=True)
            return [vectors[i] for i in range(len(texts))], (0, 0), model
        body = {**base, "input": [texts[i] for i in missing], "encoding_format": "float"}
        taken = await self.spend.admit(body)
        answer = await send(self.ctx, self.endpoint, lambda: self.endpoint.client.embeddings.create(**body))
        fresh = [list(d.embedding) for d in sorted(answer.data, key=lambda d: d.index)]
        if len(fresh) != len(missing):
            raise JobFailed(f"{self.endpoint.address} returned {len(fresh)} vectors for {len(missing)} inputs")
        usage = (answer.usage.prompt_tokens, 0) if answer.usage is not None else None
        named = answer.model or model
        await self.spend.record(named, usage, taken)
        vectors.update(zip(missing, fresh))
        if keys:
            await asyncio.to_thread(self.cache.put, {keys[i]: vector for i, vector in zip(missing, fresh)})
        return [vectors[i] for i in range(len(texts))], usage, named
