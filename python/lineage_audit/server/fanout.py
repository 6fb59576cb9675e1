"""Fan-out of events from any thread to the event loop's server-streaming subscribers.

Shared by the alert stream (:mod:`.alerts`) and the incident stream (:mod:`.incidents_rpc`).
Producers run in engine or executor threads; :meth:`FanOut.publish` hands each item to the
event loop, which puts it on every interested subscriber's queue. A subscriber that falls
``buffer`` items behind is ended (RESOURCE_EXHAUSTED) instead of slowing the producer; on
shutdown every stream ends UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["FanOut", "Subscription"]

_END = None  # queue sentinel: the stream ends


@dataclass(eq=False)
class Subscription:
    wants: Callable[[Any], bool]
    queue: asyncio.Queue
    overflowed: bool = False


class FanOut:
    def __init__(self, *, buffer: int) -> None:
        self.buffer = buffer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[Subscription] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, item: Any) -> None:
        """From any thread: deliver ``item`` on the event loop (dropped before ``bind``)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, item)

    def _deliver(self, item: Any) -> None:
        for sub in list(self._subscribers):
            if sub.overflowed or not sub.wants(item):
                continue
            if sub.queue.qsize() >= self.buffer:
                sub.overflowed = True  # its stream ends; no producer ever waits for a reader
                sub.queue.put_nowait(_END)
            else:
                sub.queue.put_nowait(item)

    def subscribe(self, wants: Callable[[Any], bool]) -> Subscription:
        sub = Subscription(wants, asyncio.Queue())  # bounded by _deliver
        self._subscribers.add(sub)
        self.subscribers_changed(len(self._subscribers))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        self.subscribers_changed(len(self._subscribers))

    def subscribers_changed(self, count: int) -> None:
        """Hook for metrics; nothing by default."""

    def close(self) -> None:
        """End every subscription (server shutdown)."""
        for sub in self._subscribers:
            sub.queue.put_nowait(_END)

    async def stream(
        self, context, wants: Callable[[Any], bool], *, overflow: str
    ) -> AsyncIterator[Any]:
        """The items a subscriber wants, until shutdown or overflow (then the RPC is aborted
        with ``overflow`` as the message). The client gets initial metadata once it is
        subscribed, so everything published after that reaches it."""
        sub = self.subscribe(wants)
        try:
            await context.send_initial_metadata((("lineage-audit-subscribed", "1"),))
            while True:
                item = await sub.queue.get()
                if item is _END:
                    break
                yield item
        finally:
            self.unsubscribe(sub)
        if sub.overflowed:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, overflow)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
