"""Names and set-up shared by the publishers and the consumers of the batch stream."""

from __future__ import annotations

import logging
import re
from typing import Any

from dronewatch.exceptions import DronewatchError

logger = logging.getLogger(__name__)

STREAM = "DRONEWATCH"
SUBJECT_PREFIX = "dronewatch.batches"
DURABLE = "dronewatch-ingest"
DUPLICATE_WINDOW_S = 600.0
"""How long JetStream remembers a message id (a batch re-sent within it is dropped)."""
ACK_WAIT_S = 30.0
"""How long a consumer may hold a batch before JetStream gives it to another service."""


class BusError(DronewatchError):
    """The NATS server cannot be reached or refused an operation."""


def subject_for(agent: str) -> str:
    """The subject an agent publishes on (its name reduced to a NATS token)."""
    token = re.sub(r"[^A-Za-z0-9_-]", "_", agent) or "agent"
    return f"{SUBJECT_PREFIX}.{token}"


def check_url(url: str) -> str:
    """A NATS URL (nats://, tls://), or BusError."""
    if not re.match(r"^(nats|tls)://[^/\s]+$", url):
        raise BusError(f"{url!r} is not a NATS URL: use nats://HOST:PORT (or tls://)")
    return url


async def connect(url: str, *, name: str) -> Any:
    """A connection to the NATS server at `url`, or BusError when it cannot be made."""
    import nats
    from nats.errors import NoServersError

    try:
        # A few quick attempts, then give up: callers reconnect themselves (the shipper with its
        # backoff, the consumer on its next pull), so a dead server is reported, not waited on.
        return await nats.connect(
            check_url(url),
            name=name,
            connect_timeout=3,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=_log_error,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        raise BusError(
            f"cannot reach the NATS server at {url}: {exc or type(exc).__name__}"
        ) from None


async def _log_error(exc: Exception) -> None:
    """nats-py's errors, in one line at debug level (its default prints a traceback); the
    shipper and the consumer report a failure that matters once, in their own words."""
    logger.debug("NATS: %s", exc or type(exc).__name__)


async def ensure_stream(js: Any) -> None:
    """Create the batch stream when it does not exist (file storage, message-id dedupe)."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(STREAM)
        return
    except NotFoundError:
        pass
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
    )
