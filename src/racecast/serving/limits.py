"""Request bounds of the inference service, checked before any expensive work.

:func:`body_guard` is a dependency of the whole ``/api/v1`` router, after
authentication: every request with a body (``POST /api/v1/predict``,
``POST /api/v1/results`` and any later JSON route) needs ``Content-Type:
application/json`` (415 otherwise) and a body that :func:`read_json_document` accepts
(422 otherwise). The body size itself is bounded while it streams in
(:mod:`racecast.serving.middleware`, 413). Parsing never recurses without a limit:

* the nesting depth is counted on the raw bytes (with numpy, brackets inside strings
  left out) *before* the text is parsed, so ``json.loads`` never meets a body deeper
  than ``max_json_depth``;
* the parsed document is walked once, without descending into an array that is over its
  bound: runners (``runners``, ``finishers``) per race, races (``races``, ``results``) per
  request, items of any other array, keys per object and string lengths.

Each problem is a FastAPI-style error ``{"loc": ["body", ...], "msg", "type"}`` whose
message names the bound and the setting that sets it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

__all__ = [
    "LIMIT_TYPE",
    "RequestLimits",
    "RequestRejected",
    "body_guard",
    "json_depth",
    "limit_problems",
    "read_json_document",
]

#: ``type`` of an error about a request bound.
LIMIT_TYPE = "limit_exceeded"
_RUNNER_ARRAYS = frozenset({"runners", "finishers"})
_RACE_ARRAYS = frozenset({"races", "results"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class RequestLimits:
    """Bounds of one JSON request body (the serving settings of the same names)."""

    max_json_depth: int
    max_races_per_request: int
    max_runners_per_race: int
    max_string_length: int
    max_object_keys: int
    max_error_details: int

    @classmethod
    def from_settings(cls, settings: Any) -> RequestLimits:
        """The bounds of a :class:`~racecast.inference.settings.ServingSettings`."""
        return cls(
            max_json_depth=settings.max_json_depth,
            max_races_per_request=settings.max_races_per_request,
            max_runners_per_race=settings.max_runners_per_race,
            max_string_length=settings.max_string_length,
            max_object_keys=settings.max_object_keys,
            max_error_details=settings.max_error_details,
        )


class RequestRejected(ValueError):
    """A body that breaks a bound or is not JSON; ``details`` are FastAPI-style errors."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(d["msg"] for d in details))
        self.details = details


#: Every byte but quotes and brackets (what the depth of a text without backslashes needs).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')


def json_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text (brackets inside strings ignored).

    A quote opens or closes a string unless an odd number of backslashes precedes it;
    brackets between an opening and a closing quote do not count. A text without
    backslashes (most bodies) is reduced to its quotes and brackets in C
    (``bytes.translate``) and the brackets outside strings are the even pieces between
    quotes; any other text is scanned vectorised with numpy.

    Args:
        raw: The body bytes.

    Returns:
        0 for a scalar, 1 for ``[]`` or ``{}``, ... (for text that is not JSON, a number
        that is never below the nesting a parser would meet).
    """
    if b"\\" not in raw:
        outside = b"".join(raw.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
        if len(outside) <= 1024:
            depth = deepest = 0
            for code in outside:
                depth += 1 if code in (91, 123) else -1
                if depth > deepest:
                    deepest = depth
            return deepest
        raw = outside  # a long run of brackets: the vectorised scan of the brackets alone
    codes = np.frombuffer(raw, dtype=np.uint8)
    if not codes.size:
        return 0
    quotes = codes == 34
    backslashes = codes == 92
    if backslashes.any():  # a quote preceded by an odd run of backslashes is escaped
        at = np.arange(codes.size, dtype=np.int32)
        last_other = np.maximum.accumulate(np.where(backslashes, np.int32(-1), at))
        run = np.zeros(codes.size, dtype=np.int32)
        run[1:] = at[:-1] - last_other[:-1]
        quotes &= (run & 1) == 0
    inside = np.logical_xor.accumulate(quotes)
    steps = ((codes == 91) | (codes == 123)).view(np.int8) - ((codes == 93) | (codes == 125)).view(
        np.int8
    )
    steps[inside] = 0
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def _error(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": LIMIT_TYPE}


def _push_or_fits(item: Any, key: str | None, longest: int, stack: list) -> bool:
    """False if ``item`` breaks the string bound or is not ``json.loads`` output (the full
    walk then judges it); a container goes on ``stack`` under ``key`` for the caller's walk."""
    kind = type(item)
    if kind is str:
        return len(item) <= longest
    if kind is dict or kind is list:
        stack.append((item, key))
        return True
    return kind in _SCALARS


def _within_bounds(document: Any, limits: RequestLimits) -> bool:
    """Whether a parsed JSON document breaks no bound (the common case, answered fast).

    The same bounds as :func:`limit_problems` without paths or messages: strings are
    checked where their container is read and only containers are stacked.
    """
    longest, keys = limits.max_string_length, limits.max_object_keys
    runners, races_bound = limits.max_runners_per_race, limits.max_races_per_request
    races = 0
    stack: list[tuple[Any, str | None]] = [(document, None)]
    while stack:
        value, key = stack.pop()
        if type(value) is dict:
            if len(value) > keys:
                return False
            for name, item in value.items():
                if len(name) > longest or not _push_or_fits(item, name, longest, stack):
                    return False
        elif type(value) is list:
            if key in _RUNNER_ARRAYS:
                if len(value) > runners:
                    return False
            elif key in _RACE_ARRAYS:
                races += len(value)
                if races > races_bound:
                    return False
            elif len(value) > races_bound:
                return False
            for item in value:
                if not _push_or_fits(item, None, longest, stack):
                    return False
        elif type(value) is str and len(value) > longest:
            return False
        elif type(value) not in _SCALARS:
            return False  # not json.loads output: the full walk judges it
    return True


def limit_problems(document: Any, limits: RequestLimits) -> list[dict[str, Any]]:
    """Every bound a parsed JSON document breaks (at most ``limits.max_error_details``).

    A document within every bound (:func:`_within_bounds`) is not walked again.

    Args:
        document: ``json.loads`` output (nested at most ``max_json_depth`` deep).
        limits: The bounds.

    Returns:
        FastAPI-style errors; empty when the document is within every bound.
    """
    return [] if _within_bounds(document, limits) else _problems(document, limits)


def _problems(document: Any, limits: RequestLimits) -> list[dict[str, Any]]:
    """:func:`limit_problems` by a walk of the whole document, with paths."""
    problems: list[dict[str, Any]] = []
    races = 0
    stack: list[tuple[list[Any], Any, str | None]] = [([], document, None)]
    while stack and len(problems) < limits.max_error_details:
        loc, value, key = stack.pop()
        if isinstance(value, str):
            if len(value) > limits.max_string_length:
                problems.append(
                    _error(
                        loc,
                        f"string of {len(value)} characters is longer than "
                        f"max_string_length = {limits.max_string_length}",
                    )
                )
        elif isinstance(value, dict):
            if len(value) > limits.max_object_keys:
                problems.append(
                    _error(
                        loc,
                        f"object with {len(value)} keys has more than "
                        f"max_object_keys = {limits.max_object_keys}",
                    )
                )
                continue
            for name, item in value.items():
                if len(name) > limits.max_string_length:
                    problems.append(
                        _error(
                            loc,
                            f"a key of {len(name)} characters is longer than "
                            f"max_string_length = {limits.max_string_length}",
                        )
                    )
                    continue
                stack.append(([*loc, name], item, name))
        elif isinstance(value, list):
            if key in _RUNNER_ARRAYS:
                bound, name = limits.max_runners_per_race, "max_runners_per_race"
            else:
                bound, name = limits.max_races_per_request, "max_races_per_request"
            if key in _RACE_ARRAYS:
                races += len(value)
                if races > bound:
                    problems.append(
                        _error(
                            loc,
                            f"more than max_races_per_request = {bound} races "
                            f"(or results) in one request",
                        )
                    )
                    continue
            elif len(value) > bound:
                what = "runners" if key in _RUNNER_ARRAYS else "items"
                problems.append(_error(loc, f"{len(value)} {what} are more than {name} = {bound}"))
                continue
            stack.extend(([*loc, i], item, None) for i, item in reversed(list(enumerate(value))))
    return problems


def read_json_document(raw: bytes, limits: RequestLimits) -> Any:
    """Parse a JSON body within its bounds.

    Args:
        raw: The body bytes (already within ``max_body_bytes``).
        limits: The bounds.

    Returns:
        The parsed document.

    Raises:
        RequestRejected: If the body is not UTF-8 JSON or breaks a bound.
    """
    depth = json_depth(raw)
    if depth > limits.max_json_depth:
        raise RequestRejected(
            [
                _error(
                    [],
                    f"JSON nested {depth} deep is deeper than max_json_depth = {limits.max_json_depth}",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRejected(
            [
                {
                    "loc": ["body", exc.start],
                    "msg": "request body is not UTF-8 text",
                    "type": "unicode_error",
                }
            ]
        ) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestRejected(
            [
                {
                    "loc": ["body", exc.pos],
                    "msg": f"JSON decode error: {exc.msg} at line {exc.lineno} column {exc.colno}",
                    "type": "json_invalid",
                }
            ]
        ) from exc
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise RequestRejected(
            [{"loc": ["body"], "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
        ) from exc
    problems = limit_problems(document, limits)
    if problems:
        raise RequestRejected(problems)
    return document


def json_content_type(value: str | None) -> bool:
    """Whether a ``Content-Type`` is ``application/json`` (UTF-8 if a charset is given)."""
    media, _, params = (value or "").partition(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        name, _, given = param.partition("=")
        if name.strip().lower() == "charset" and given.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def body_guard(limits: RequestLimits) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that refuses a body of any route before the route reads it.

    Args:
        limits: The bounds.

    Returns:
        ``async guard(request)``: raises ``HTTPException(415)`` for another content type
        and ``RequestValidationError`` (422) for a body that is not UTF-8 JSON within the
        bounds; sets ``request.state.rejection`` to the cause. Requests without a body
        method pass untouched.
    """

    async def guard(request: Request) -> None:
        if request.method not in _BODY_METHODS:
            return
        content_type = request.headers.get("content-type")
        if not json_content_type(content_type):
            request.state.rejection = "unsupported_media_type"
            shown = (content_type or "none")[:100]
            raise HTTPException(
                status_code=415, detail=f"Content-Type must be application/json (got {shown})"
            )
        try:
            read_json_document(await request.body(), limits)
        except RequestRejected as exc:
            request.state.rejection = exc.details[0]["type"]
            raise RequestValidationError(exc.details) from exc

    return guard
