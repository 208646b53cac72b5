"""The service's OpenAPI document: request bodies from the JSON contract, every status.

The request bodies are the contract's own pydantic models
(:class:`racecast.ingestion.contract.RacecardFile` for ``POST /api/v1/predict``,
:class:`~racecast.ingestion.contract.ResultsFile` for ``POST /api/v1/results``; the same
models ``docs/racecard.schema.json`` is generated from), registered under
``components/schemas`` and tightened with the service's own bounds (array sizes, string
lengths, plausible odds and ratings) so that a generated client knows them. Rules that
span records (unique ids, draws within the field, off time on the meeting date) are not
expressible in JSON Schema: the parser enforces them and answers 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from racecast.ingestion.contract import RacecardFile, ResultsFile

__all__ = [
    "RACECARD_EXAMPLE",
    "ErrorMessage",
    "ValidationErrors",
    "error_responses",
    "install_openapi",
    "json_body",
]

RACECARD_EXAMPLE: dict[str, Any] = {
    "format": "racecast.racecard/1",
    "meetings": [
        {
            "date": "2025-02-06",
            "course": "ST",
            "country": "HK",
            "races": [
                {
                    "race_id": "HK-2025-02-06-ST-01",
                    "off_time": "2025-02-06T14:30:00+08:00",
                    "race_type": "flat",
                    "surface": "turf",
                    "going": "good",
                    "distance_m": 1200,
                    "race_class": 4,
                    "runners": [
                        {
                            "horse_id": "3917",
                            "draw": 2,
                            "rating": 60,
                            "jockey_id": "2",
                            "trainer_id": "118",
                            "weight_carried_kg": 60.3,
                            "odds": {"final": 9.7},
                        },
                        {
                            "horse_id": "4012",
                            "draw": 1,
                            "rating": 58,
                            "jockey_id": "5",
                            "trainer_id": "97",
                            "weight_carried_kg": 57.1,
                            "odds": {"final": 3.2},
                        },
                    ],
                }
            ],
        }
    ],
}

RESULTS_EXAMPLE: dict[str, Any] = {
    "format": "racecast.results/1",
    "results": [
        {
            "race_id": "HK-2025-02-06-ST-01",
            "status": "official",
            "finishers": [
                {"horse_id": "4012", "position": 1, "outcome": "finished", "starting_price": 3.1},
                {"horse_id": "3917", "position": 2, "outcome": "finished", "lengths_behind": 1.5},
            ],
        }
    ],
}


class ErrorMessage(BaseModel):
    """An error answer with one message."""

    detail: str = Field(description="What is wrong, naming the field or the bound.")


class ErrorItem(BaseModel):
    """One problem of a request."""

    loc: list[str | int] = Field(description="Where: body or query, then the JSON path.")
    msg: str
    type: str


class ValidationErrors(BaseModel):
    """Every problem of a request (at most ``max_error_details``), each with its path."""

    detail: list[ErrorItem]


_ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    401: (ErrorMessage, "Missing or unknown X-API-Key."),
    404: (ErrorMessage, "Not found (a race this key did not post, an unknown horse)."),
    409: (ErrorMessage, "The request would use information from after the race (look-ahead)."),
    413: (ErrorMessage, "Body larger than max_body_bytes."),
    415: (ErrorMessage, "Content-Type is not application/json."),
    422: (ValidationErrors, "Not JSON, over a request bound, or not a valid document."),
    429: (ErrorMessage, "Rate limit, or back-off after failed API keys (see Retry-After)."),
    503: (ErrorMessage, "The bundle or the feature store is not loaded."),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the documented error answers among ``statuses``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model, description = _ERRORS[status]
        out[status] = {"model": model, "description": description}
        if status == 429:
            out[status]["headers"] = {
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            }
    return out


def json_body(model: type[BaseModel], example: dict[str, Any], description: str) -> dict[str, Any]:
    """``openapi_extra=`` of a route whose raw JSON body is a contract document."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "example": example,
                }
            },
        }
    }


def _tighten(schema: Any, key: str | None, bounds: dict[str, Any]) -> None:
    """Write the service's bounds into a contract schema, in place."""
    if isinstance(schema, list):
        for item in schema:
            _tighten(item, key, bounds)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "string" and "maxLength" not in schema and "enum" not in schema:
        schema["maxLength"] = bounds["max_string_length"]
    if kind == "array":
        if key in ("runners", "finishers"):
            schema["maxItems"] = bounds["max_runners_per_race"]
        else:
            schema["maxItems"] = bounds["max_races_per_request"]
    if kind == "number" and key in ("final", "morning", "starting_price"):
        schema.pop("exclusiveMinimum", None)
        schema["minimum"], schema["maximum"] = bounds["odds_min"], bounds["odds_max"]
    if kind == "number" and key == "rating":
        schema["minimum"], schema["maximum"] = bounds["rating_min"], bounds["rating_max"]
    for name, value in schema.items():
        if name == "properties" and isinstance(value, dict):
            for prop, sub in value.items():
                _tighten(sub, prop, bounds)
        elif name in ("items", "anyOf", "oneOf", "allOf", "$defs"):
            if name == "$defs":
                for sub in value.values():
                    _tighten(sub, None, bounds)
            else:
                _tighten(value, key, bounds)


def contract_components(settings: Any) -> dict[str, Any]:
    """``components/schemas`` entries of the contract's documents, with the bounds."""
    bounds = {
        "max_string_length": settings.max_string_length,
        "max_runners_per_race": settings.max_runners_per_race,
        "max_races_per_request": settings.max_races_per_request,
        "odds_min": settings.plausibility.odds_min,
        "odds_max": settings.plausibility.odds_max,
        "rating_min": settings.plausibility.rating_min,
        "rating_max": settings.plausibility.rating_max,
    }
    components: dict[str, Any] = {}
    for model in (RacecardFile, ResultsFile):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = schema.pop("$defs", {})
        components.update(defs)
        components[model.__name__] = schema
    for schema in components.values():  # model_json_schema builds new dicts: ours to change
        _tighten(schema, None, bounds)
    return components


def install_openapi(app: FastAPI, settings: Any) -> Callable[[], dict[str, Any]]:
    """Make ``app.openapi()`` include the contract's schemas (built once, on first call)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in contract_components(settings).items():
                if schemas.setdefault(name, schema) is not schema:  # never a silent mix-up
                    raise RuntimeError(
                        f"OpenAPI: a response model is named like contract model {name}"
                    )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
