"""The FastAPI inference service: racecard in, calibrated win probabilities and stakes out.

``create_app(settings)`` builds the app; ``racecast serve`` runs it with uvicorn through the
factory :func:`serve_app` (one app per worker process with ``--workers N``) and
``racecast predict`` calls the same :class:`InferenceService` without a server.

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

* ``POST /api/v1/predict``: a racecard (JSON contract ``racecast.racecard/1``, one or many
  races) -> per-runner probabilities, fair odds, edge, fractional-Kelly stakes,
  staleness and, with ``?explain=true``, the explanation (:mod:`racecast.inference.scoring`;
  each race explained once while its features stay the same). The body is validated by
  the ingestion parser (:func:`racecast.features.online.racecard_entity_rows`); a bad
  body is a 422 ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` naming the field.
* ``GET /api/v1/races/{race_id}``: the last predictions of a race, with no cross-client
  state (:mod:`racecast.serving.race_cache`): a race the server scored from its own
  racecards (the upcoming folder, pushed results), which every key reads and no post
  replaces, else what the *same* API key posted (kept under its key id). What one client
  posts is never what another client reads. Before answering a server-owned race, the
  day is scored again if one of its racecards or results changed since (a push through
  another worker of ``racecast serve --workers N``).
* ``GET /api/v1/horses/{horse_id}``: the horse's current online state (``horse_form``).
* ``GET /health``: 200 when the bundle is loaded and the online store answers, else 503.
* ``GET /metrics``: Prometheus text (:mod:`racecast.serving.metrics`).

Every ``/api/v1`` route needs an ``X-API-Key`` (:mod:`racecast.serving.auth`) and is rate
limited per key; ``/health`` and ``/metrics`` are open (probes and scrapers). Features
are read from the Feast online store and transformed by the shared
``build_features`` (:func:`racecast.features.online.online_features`): the service has
no transform of its own. Bodies over ``max_body_bytes`` get 413
(:mod:`racecast.serving.middleware`); after the key, any body needs ``Content-Type:
application/json`` (415) and must be within the JSON bounds (422,
:mod:`racecast.serving.limits`), whatever the route. Failed keys back off per client
address (429). An unexpected error is a 500 ``{"detail": "internal error", "request_id":
...}`` whose trace goes to the log only. The OpenAPI document's request bodies are the
contract's models (:mod:`racecast.serving.openapi`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader

from racecast.inference.guard import LookAheadError
from racecast.inference.service import (
    InferenceService,
    RacecardRequestError,
    parse_as_of,
)
from racecast.inference.settings import ServingSettings, SettingsError
from racecast.ingestion.contract import RacecardFile, ResultsFile
from racecast.serving.auth import ApiKeyVerifier, AuthBackoff, RateLimiter, load_api_key_hashes
from racecast.serving.limits import RequestLimits, body_guard
from racecast.serving.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from racecast.serving.middleware import RejectionLog, ServiceMiddleware, client_address
from racecast.serving.openapi import (
    RACECARD_EXAMPLE,
    RESULTS_EXAMPLE,
    error_responses,
    install_openapi,
    json_body,
)
from racecast.serving.race_cache import RaceCache
from racecast.serving.schemas import HorseState, PredictResponse, RacePrediction

logger = logging.getLogger(__name__)

__all__ = ["API_PREFIX", "SERVE_ARGS_ENV", "create_app", "serve_app", "serve_args"]

API_PREFIX = "/api/v1"
#: Environment variable through which ``racecast serve`` hands its options to the workers.
SERVE_ARGS_ENV = "RACECAST_SERVE_ARGS"
#: Requests scored at the same time (the others queue in the event loop).
_SCORING_SLOTS = 1


# ---------------------------------------------------------------------------- errors
class ServiceNotReady(RuntimeError):
    """The bundle or the feature store is not loaded."""


# ---------------------------------------------------------------------------- factory
def serve_args(env: str | None, bundle: str | None, insecure: bool) -> str:
    """``racecast serve``'s options as the value of :data:`SERVE_ARGS_ENV`."""
    return json.dumps({"env": env, "bundle": bundle, "insecure": bool(insecure)})


def serve_app() -> FastAPI:
    """The app of one ``racecast serve`` process (uvicorn's factory, once per worker;
    :mod:`racecast.serving.run`).

    Reads the command's options from :data:`SERVE_ARGS_ENV` (:func:`serve_args`); the
    settings, API keys and race-day paths come from the project in the current
    directory, as for ``create_app``.
    """
    from racecast.inference.results import raceday_paths

    args = json.loads(os.environ.get(SERVE_ARGS_ENV) or "{}")
    settings = ServingSettings.from_project(
        args.get("env"),
        bundle_uri=args.get("bundle"),
        allow_anonymous=True if args.get("insecure") else None,
    )
    return create_app(settings, raceday_paths=raceday_paths(args.get("env")))


# ---------------------------------------------------------------------------- app
def _freeze_gc() -> None:
    """Collect once, then exempt every live object from later cyclic collections."""
    gc.collect()
    gc.freeze()
    logger.info("gc: %d long-lived objects frozen", gc.get_freeze_count())


async def _ready_service(request: Request) -> InferenceService:
    """The app's service, or 503 while the bundle or the feature store is not loaded.

    A coroutine: FastAPI would run a plain function on a worker thread (two thread
    hand-offs per request for an attribute read).
    """
    service = request.app.state.service
    if service is None:
        raise HTTPException(status_code=503, detail="the model bundle or the feature store is not loaded")
    return service


ReadyService = Annotated[InferenceService, Depends(_ready_service)]


def _client_identity(request: Request) -> str:
    return f"client:{request.client.host if request.client else 'unknown'}"


async def _body_text(request: Request) -> str:
    """The request body as text, or a 422 when it is not UTF-8."""
    raw = await request.body()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestValidationError(
            [{"loc": ["body", exc.start], "msg": "request body is not UTF-8 text", "type": "unicode_error"}]
        ) from exc


def create_app(
    settings: ServingSettings,
    *,
    bundle: Any = None,
    feature_store: Any = None,
    clock: Callable[[], float] = time.monotonic,
    freeze_gc: bool | None = None,
    raceday_paths: Any = None,
) -> FastAPI:
    """Build the inference service app.

    The bundle (``load_bundle(settings.bundle_uri)``) and the feature store
    (``get_store(settings.feature_repo)``) are opened once, in the app's lifespan, unless
    given; a failure to load either is logged and leaves the app alive but not ready
    (``/health`` 503, scoring routes 503).

    Args:
        settings: Service settings.
        bundle: An already loaded bundle (tests, benchmarks); skips ``load_bundle``.
        feature_store: An open Feast ``FeatureStore``; skips ``get_store``.
        clock: Monotonic clock of the rate limiter.
        freeze_gc: Move every object alive once the service is ready out of the cyclic
            garbage collector's reach (``gc.freeze``): the loaded models, Feast and
            MLflow are ~600k objects that a full collection would otherwise walk in the
            middle of a request. Default: when the app loads the bundle itself (a
            server process, not a test that hands it one).
        raceday_paths: :class:`racecast.inference.results.RaceDayPaths` of the env;
            enables ``POST /api/v1/results`` (503 without).

    Returns:
        The FastAPI app.

    Raises:
        SettingsError: If no API key is configured and ``allow_anonymous`` is false, or a
            key source is malformed.
    """
    try:
        hashes = load_api_key_hashes(settings.credentials_path, settings.api_keys)
    except ValueError as exc:
        raise SettingsError(f"API keys: {exc}") from exc
    if not hashes and not settings.allow_anonymous:
        raise SettingsError(
            "no API key configured (conf/local/credentials.yml racecast_api_keys, "
            "RACECAST_API_KEYS or settings api_keys): refusing to serve without "
            "authentication; pass --insecure (allow_anonymous=True) to serve anyway"
        )
    verifier = ApiKeyVerifier(hashes)
    limiter = RateLimiter(settings.rate_limit_per_minute, 60.0, clock=clock)
    backoff = AuthBackoff(
        settings.auth_free_failures, settings.auth_backoff_s, settings.auth_backoff_max_s, clock=clock
    )
    metrics = ServiceMetrics()
    races = RaceCache(settings.race_cache_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Scoring is CPU-bound Python: one request at a time (its explanations still run
        # alongside); the others wait in the event loop. Sixteen threads fighting over the
        # GIL would score each request more slowly (~20% fewer requests per second).
        app.state.scoring_slots = CapacityLimiter(_SCORING_SLOTS)
        loaded_bundle, store = bundle, feature_store
        if loaded_bundle is None:
            try:
                from racecast.inference.registry import load_bundle

                loaded_bundle = await run_in_threadpool(load_bundle, settings.bundle_uri)
            except Exception:
                logger.exception("could not load the bundle %s: the service is not ready", settings.bundle_uri)
        if store is None:
            try:
                from racecast.features.store import get_store

                store = await run_in_threadpool(get_store, settings.feature_repo)
            except Exception:
                logger.exception("could not open the feature store %s: the service is not ready", settings.feature_repo)
        if loaded_bundle is not None and store is not None:
            service = InferenceService(settings, loaded_bundle, store)
            app.state.service = service
            if raceday_paths is not None:
                from racecast.inference.results import RaceDay

                app.state.raceday = RaceDay(
                    raceday_paths, store, settings.feature_params, lock=service.store_lock
                )
            if app.state.board is not None:
                try:  # the day's first page is scored now, not while a visitor waits
                    await to_thread.run_sync(app.state.board.warm, service)
                    await to_thread.run_sync(app.state.board_reports)
                except Exception:  # the board scores again on its first page
                    logger.exception("board: could not score the day at startup")
            metrics.model_info.labels(str(loaded_bundle.model_version), service.feature_service).set(1)
            logger.info(
                "serving %s (feature service %s, %d API keys%s)",
                loaded_bundle.model_version,
                service.feature_service,
                len(verifier),
                ", anonymous allowed" if settings.allow_anonymous else "",
            )
        app.state.bundle_loaded = loaded_bundle is not None
        if freeze_gc or (freeze_gc is None and bundle is None):
            _freeze_gc()
        yield
        if app.state.service is not None:
            app.state.service.close()
        app.state.service = None

    app = FastAPI(
        title="racecast",
        version="1",
        description=(
            "Calibrated win probabilities, fair odds and fractional-Kelly stakes for racecards "
            "(JSON contract racecast.racecard/1). Send `X-API-Key` on every /api/v1 route."
        ),
        lifespan=lifespan,
    )
    app.state.service = None
    app.state.raceday = None
    app.state.board = None
    app.state.bundle_loaded = False
    app.add_middleware(
        ServiceMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        rejections=RejectionLog(settings.rejection_log_interval_s, clock=clock),
    )
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")

    async def authorize(request: Request, api_key: str | None = Security(api_key_header)) -> str:
        if verifier:
            address = client_address(request.scope)
            wait = backoff.retry_after(address)
            if wait:
                request.state.rejection = "auth_backoff"
                raise HTTPException(
                    status_code=429,
                    detail=f"too many failed API key attempts from {address}: retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            key_id = verifier.verify(api_key)
            if key_id is None:
                backoff.fail(address)
                metrics.auth_failures.inc()
                raise HTTPException(
                    status_code=401,
                    detail="missing or invalid API key (header X-API-Key)",
                    headers={"WWW-Authenticate": "ApiKey"},
                )
            identity = f"key:{key_id}"
        else:
            identity = _client_identity(request)
        allowed, retry_after = limiter.acquire(identity)
        if not allowed:
            raise HTTPException(
                status_code=429,
                detail=f"rate limit of {limiter.limit} requests per minute exceeded",
                headers={"Retry-After": str(retry_after)},
            )
        return identity

    guard = body_guard(RequestLimits.from_settings(settings))

    async def admit(request: Request, api_key: str | None = Security(api_key_header)) -> None:
        """The ``/api/v1`` router's one dependency: authentication first, then the request
        bounds of any body (before the route reads it). The caller's identity goes to
        ``request.state.identity``: routes read it there instead of solving ``authorize``
        again (fewer dependencies for FastAPI to solve on every request)."""
        request.state.identity = await authorize(request, api_key)
        await guard(request)

    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(admit)])

    @router.post(
        "/predict",
        response_model=PredictResponse,
        openapi_extra=json_body(RacecardFile, RACECARD_EXAMPLE, "A racecard (docs/racecard_format.md)."),
        summary="Score a racecard",
        responses=error_responses(401, 409, 413, 415, 422, 429, 503),
    )
    async def predict(
        request: Request,
        service: ReadyService,
        as_of: str | None = Query(
            None,
            max_length=64,
            description="ISO 8601 time with offset: score point in time from the offline "
            "store as known then (races already run). Without it, races are upcoming: one "
            "whose result the online store holds is refused with 409.",
        ),
        explain: bool = Query(
            False,
            description="Add each runner's explanation (the ranker's largest feature "
            "contributions; computed once per race and features). Without it `explanation` "
            "is null.",
        ),
    ) -> dict[str, Any]:
        text = await _body_text(request)
        try:
            if as_of is not None:
                parse_as_of(as_of)
        except ValueError as exc:
            raise RequestValidationError(
                [{"loc": ["query", "as_of"], "msg": str(exc), "type": "value_error"}]
            ) from exc
        try:
            result = await to_thread.run_sync(
                service.score_text, text, "request", as_of, explain, limiter=request.app.state.scoring_slots
            )
        except RacecardRequestError as exc:
            raise RequestValidationError(exc.details) from exc
        except LookAheadError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        for race in result["races"]:
            races.put(request.state.identity, race)
        runners = [r for race in result["races"] for r in race["runners"]]
        metrics.observe_predictions(
            fundamental=len(runners),
            combined=sum(r["p_win_combined"] is not None for r in runners),
            staleness_days=[r["feature_staleness_days"] for r in runners],
        )
        return result

    @router.post(
        "/results",
        summary="Push a race's results (race day)",
        responses=error_responses(401, 404, 413, 415, 422, 429, 503),
        openapi_extra=json_body(ResultsFile, RESULTS_EXAMPLE, "Results (docs/racecard_format.md)."),
    )
    async def push_results(request: Request, service: ReadyService) -> dict[str, Any]:
        """Results of races whose racecard the server knows (JSON contract
        racecast.results/1): validated as batch ingestion validates them, the state of
        exactly the entities that ran written to the online store before the next race
        is scored. The same results twice change nothing; a correction replaces them."""
        from racecast.inference.results import (
            ResultsRejected,
            UnknownRaceError,
            results_problem_details,
        )

        raceday = request.app.state.raceday
        if raceday is None:
            raise HTTPException(status_code=503, detail="race day is not configured on this server")
        text = await _body_text(request)
        try:
            summary = await to_thread.run_sync(
                raceday.push, text, "request", limiter=request.app.state.scoring_slots
            )
        except UnknownRaceError as exc:
            raise HTTPException(status_code=404, detail=str(exc).strip("'\"")) from exc
        except ResultsRejected as exc:
            raise RequestValidationError(
                results_problem_details(text, exc.problems, service.settings.max_error_details)
            ) from exc
        if summary["status"] != "unchanged" and request.app.state.board is not None:
            # the day's races still to run are scored again now, so the board's next page
            # (and GET /races) is current without a human waiting for it
            await to_thread.run_sync(
                request.app.state.board.rescore,
                service,
                summary["races"],
                limiter=request.app.state.scoring_slots,
            )
        return summary

    @router.get(
        "/races/{race_id}",
        response_model=RacePrediction,
        summary="Last predictions of a race (server-owned, or posted by this key)",
        responses=error_responses(401, 404, 422, 429),
    )
    async def get_race(
        request: Request, race_id: str = Path(max_length=200)
    ) -> dict[str, Any]:
        board, service = request.app.state.board, request.app.state.service
        if board is not None and service is not None:
            # a result pushed through another worker changed the day: score it again
            # before answering from this process's cache (README "Scale")
            stale = await to_thread.run_sync(board.stale_day, race_id)
            if stale is not None:
                await to_thread.run_sync(
                    board.refresh, service, stale, limiter=request.app.state.scoring_slots
                )
        race = races.get(request.state.identity, race_id)
        if race is None:
            raise HTTPException(status_code=404, detail=f"race {race_id!r} has not been scored by this service")
        return race

    @router.get(
        "/horses/{horse_id}",
        response_model=HorseState,
        summary="A horse's current online state",
        responses=error_responses(401, 404, 422, 429, 503),
    )
    async def get_horse(
        service: ReadyService,
        horse_id: str = Path(max_length=200),
    ) -> dict[str, Any]:
        state = await run_in_threadpool(service.horse_state, horse_id)
        if state is None:
            raise HTTPException(status_code=404, detail=f"horse {horse_id!r} has no state in the online store")
        return state

    app.include_router(router)
    # the race-day board (pages at /, /race/..., /model): racecast.serving.board
    from racecast.serving.board import board_router

    board = board_router(authorize, races, raceday_paths)
    app.include_router(board)
    app.state.board = board.board
    app.state.board_reports = board.reports_of

    @app.get("/health", summary="Liveness and readiness", responses=error_responses(503))
    async def health(request: Request) -> JSONResponse:
        service: InferenceService | None = request.app.state.service
        store_ok = service is not None and await run_in_threadpool(service.store_reachable)
        ready = service is not None and store_ok
        body = {
            "status": "ok" if ready else "unavailable",
            "live": True,
            "ready": ready,
            "bundle_loaded": bool(request.app.state.bundle_loaded),
            "online_store": store_ok,
            "model_version": None if service is None else str(service.bundle.model_version),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    install_openapi(app, settings)
    app.state.metrics = metrics
    app.state.races = races
    return app
