"""A sink that POSTs each alert as JSON, retrying connection errors, 429 and 5xx answers with
exponential backoff (honouring Retry-After), never retrying other 4xx answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from typing import TYPE_CHECKING

import httpx

from dronewatch.api.sinks.config import SinkError
from dronewatch.judge.alert import Alert, to_ecs

if TYPE_CHECKING:
    from dronewatch.api.sinks.config import WebhookSinkConfig


class WebhookSink:
    def __init__(self, config: WebhookSinkConfig) -> None:
        self.config = config
        self.name = f"webhook:{config.url}"
        self._client = httpx.AsyncClient(timeout=config.timeout_s)
        self.attempts = 0

    def body(self, alert: Alert) -> bytes:
        doc = {"alert": alert.to_dict(), "ecs": to_ecs(alert)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    async def send(self, alert: Alert) -> None:
        body = self.body(alert)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{alert.id}:{alert.last_seen}",
            **self.config.headers,
        }
        if self.config.secret:
            digest = hmac.new(self.config.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Dronewatch-Signature"] = f"sha256={digest}"
        delay = self.config.backoff_initial_s
        for attempt in range(self.config.max_retries + 1):
            self.attempts += 1
            wait = delay
            try:
                resp = await self._client.post(self.config.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{self.config.url}: {exc}"
            else:
                if resp.status_code < 300:
                    return
                problem = f"{self.config.url} answered {resp.status_code}"
                if resp.status_code < 500 and resp.status_code != 429:
                    raise SinkError(problem)
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), self.config.backoff_max_s)
            if attempt == self.config.max_retries:
                raise SinkError(f"{problem} (gave up after {attempt + 1} attempts)")
            await asyncio.sleep(wait * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.config.backoff_max_s)

    async def close(self) -> None:
        await self._client.aclose()
