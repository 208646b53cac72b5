"""The inference service's ASGI middleware: request id, body size, catch-all 500, metrics.

Every answer carries ``X-Request-ID`` and ``X-Racecast-Worker`` (the PID of the process
that answered: with ``racecast serve --workers N`` it names the worker, as in its log).

A body over ``max_body_bytes`` is refused with 413 from its ``Content-Length`` or, without
one, as soon as more bytes arrive; the other request bounds (content type, JSON depth and
sizes) are checked after authentication by :func:`racecast.serving.limits.body_guard`.
4xx answers are counted by cause (``racecast_rejected_requests_total``; a route or
dependency names the cause with ``request.state.rejection``) and logged by
:class:`RejectionLog`, at most once per client per interval.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from racecast.serving.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

__all__ = ["RejectionLog", "ServiceMiddleware", "client_address"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Cause of a 4xx answer whose route did not name one.
_REASONS = {
    401: "auth_failed",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


class _BodyTooLarge(Exception):
    """Raised by the body-size guard while the body streams in."""


def client_address(scope: Scope) -> str:
    """The client's address (``unknown`` when the server does not say)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RejectionLog:
    """Logs a client's rejected requests at most once per ``interval_s``, as a summary.

    The first rejection of a quiet client is logged at once; later ones are counted and
    summarised (by cause) with the next one logged after the interval. Thread-safe; at
    most ``max_clients`` clients are remembered.
    """

    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._max_clients = max_clients
        self._clients: dict[str, tuple[float, Counter[str]]] = {}
        self._lock = threading.Lock()

    def note(self, client: str, reason: str, path: str) -> None:
        """Count one rejected request of ``client``; log the summary when it is due."""
        now = self._clock()
        with self._lock:
            last, counts = self._clients.pop(client, (float("-inf"), Counter()))
            counts[reason] += 1
            due = now - last >= self.interval_s
            summary = dict(counts) if due else None
            self._clients[client] = (now, Counter()) if due else (last, counts)
            while len(self._clients) > self._max_clients:
                del self._clients[next(iter(self._clients))]
        if summary is not None:
            total = sum(summary.values())
            causes = ", ".join(f"{k}: {v}" for k, v in sorted(summary.items()))
            logger.warning(
                "client %s: %d request(s) rejected since its last report (%s); last %s",
                client,
                total,
                causes,
                path,
            )


def _route_template(scope: Scope) -> str:
    """The route template a request's path matches (``<unmatched>`` if none)."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", "<unmatched>")
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return getattr(candidate, "path", "<unmatched>")
    return "<unmatched>"


class ServiceMiddleware:
    """Request id, body size, catch-all 500, request metrics and rejections (pure ASGI).

    Args:
        app: The wrapped app.
        max_body_bytes: Largest body accepted.
        metrics: The app's metrics.
        rejections: Where rejected requests are logged.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: ServiceMetrics,
        rejections: RejectionLog,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.rejections = rejections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = False
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                tags = MutableHeaders(scope=message)
                tags.append("X-Request-ID", request_id)
                tags.append("X-Racecast-Worker", str(os.getpid()))
            await send(message)

        async def reject(code: int, detail: Any, reason: str) -> None:
            state["rejection"] = reason
            await JSONResponse({"detail": detail}, status_code=code)(scope, receive, tagged_send)

        try:
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge
            await self.app(scope, guarded_receive, tagged_send)
        except _BodyTooLarge:
            if not started:
                detail = f"request body larger than max_body_bytes = {self.max_body_bytes} bytes"
                await reject(413, detail, "body_too_large")
        except Exception:
            logger.exception(
                "request %s %s failed (request_id=%s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if not started:
                body = {"detail": "internal error", "request_id": request_id}
                await JSONResponse(body, status_code=500)(scope, receive, tagged_send)
        finally:
            route = _route_template(scope)
            self.metrics.observe_request(
                route, scope.get("method", ""), status, time.perf_counter() - start
            )
            if 400 <= status < 500:
                reason = state.get("rejection") or _REASONS.get(status, f"http_{status}")
                self.metrics.rejected.labels(reason=reason).inc()
                self.rejections.note(
                    client_address(scope), reason, f"{scope.get('method')} {scope.get('path')}"
                )
