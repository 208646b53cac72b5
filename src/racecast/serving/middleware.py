"""The inference service's ASGI middleware: request id, request bounds, catch-all 500, metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from racecast.serving.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

__all__ = ["ServiceMiddleware"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _BodyTooLarge(Exception):
    """Raised by the body-size guard while the body streams in."""


class ServiceMiddleware:
    """Request id, body-size limit, catch-all 500 and request metrics (pure ASGI)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
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
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge
            await self.app(scope, guarded_receive, tagged_send)
        except _BodyTooLarge:
            if not started:
                detail = f"request body larger than {self.max_body_bytes} bytes"
                await JSONResponse({"detail": detail}, status_code=413)(scope, receive, tagged_send)
        except Exception:
            logger.exception(
                "request %s %s failed (request_id=%s)", scope.get("method"), scope.get("path"), request_id
            )
            if not started:
                body = {"detail": "internal error", "request_id": request_id}
                await JSONResponse(body, status_code=500)(scope, receive, tagged_send)
        finally:
            route = getattr(scope.get("route"), "path", "<unmatched>")
            self.metrics.observe_request(route, scope.get("method", ""), status, time.perf_counter() - start)
