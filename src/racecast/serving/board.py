"""The race-day board: web pages over the inference service (``racecast serve``).

Routes (server-rendered Jinja2, a little plain JS, no build step):

* ``GET /``: the day's meetings and races in off-time order, with a countdown and the
  state of each race (upcoming / off / result in); ``?day=YYYY-MM-DD`` picks another day
  of the upcoming folder (default: the latest, as the scoring pipeline); monitoring's
  drift verdict.
* ``GET /race/{race_id}``: the runners with p_win (fundamental and combined), fair odds,
  market odds, edge, stake (0 with the reason when not staked) and the top explanation
  factors; after the result, the finishing order and the race's log-loss contribution.
* ``GET /model``: the model card: registry version and alias, feature service, holdout
  metrics and staking validation of the serving bundle, the evaluation table and the
  reliability and Kelly plots of ``data/08_reporting``, drift status from monitoring.json.
* ``GET /board/plots/{reliability,kelly}.png`` and ``GET /board/static/{board.js,board.css}``.
* ``GET /board/status``: ``{"version"}``, which changes when a racecard of the day or a
  result of one of its races changes; the pages poll it and reload.
* ``GET /login``, ``POST /login``, ``POST /logout``: the API key is checked by the app's
  own ``authorize`` (same keys, back-off and rate limit as ``/api/v1``) and kept in an
  HTTP-only, ``SameSite=Strict`` cookie (never in a URL). Without a valid cookie a page
  redirects to the login form and ``/board/status`` answers 401.

**Same numbers as the API**: the probabilities, odds, edges and stakes are the
:class:`~racecast.inference.service.InferenceService` answer, the one ``POST
/api/v1/predict`` gives, kept in the app's race cache as server-owned races
(:meth:`racecast.serving.race_cache.RaceCache.put_server`, so ``GET
/api/v1/races/{race_id}`` answers the same); templates only format them. A race is
scored from the online store while its result is unknown, again whenever a result of the
day or a racecard changes. Once its result is pushed the point-in-time guard refuses it,
and the board keeps the last prediction the server made before the result; if the server
never scored it (started after the push), or the guard refuses a race whose result was
not pushed here, it is scored point in time at its off from the offline store
(``as_of``, what the online store answered before the off). The race's
log-loss contribution is ``-log p`` of the winner under those probabilities.

Every board response carries a Content-Security-Policy (scripts, styles and images
from the service only, no inline script) and the usual security headers; templates
autoescape, so names from feeds render as text.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import pandas as pd
from anyio import to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape

from racecast.inference.guard import LookAheadError
from racecast.inference.service import InferenceService, RacecardRequestError, parse_racecard
from racecast.serving.board_day import (
    DayCard,
    day_files,
    day_signature,
    finishing_order,
    log_loss_contribution,
    pick_day,
    race_result,
    race_state,
    read_day,
)
from racecast.serving.race_cache import RaceCache

logger = logging.getLogger(__name__)

__all__ = ["COOKIE", "SECURITY_HEADERS", "Board", "ReportPaths", "board_router", "report_paths"]

#: Cookie holding the API key (HTTP-only, SameSite=Strict).
COOKIE = "racecast_key"
#: Seconds between two status polls of an open page.
POLL_SECONDS = 3
#: Largest login form body read.
_MAX_FORM_BYTES = 4096
#: Owner passed to the race cache: no API key identity (``key:...``/``client:...``) has it,
#: so only server-owned races are read.
_SERVER = "board"
_HERE = Path(__file__).resolve().parent
_STATIC = {"board.js": "text/javascript", "board.css": "text/css"}
_PLOTS = ("reliability", "kelly")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


# ---------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class ReportPaths:
    """Reports the model card reads (``data/08_reporting`` of the catalog)."""

    evaluation: Path
    reliability: Path
    kelly: Path
    monitoring: Path
    registry: Path


def report_paths(env: str | None = None, root: Path | None = None) -> ReportPaths:
    """The model card's reports from the env's catalog (``evaluation_report``,
    ``evaluation_reliability_plot``, ``evaluation_kelly_plot``, ``monitoring_report``,
    ``registry_result``)."""
    from racecast.project import dataset_path, load_catalog_config

    catalog = load_catalog_config(env, root)
    return ReportPaths(
        evaluation=dataset_path(catalog, "evaluation_report", root),
        reliability=dataset_path(catalog, "evaluation_reliability_plot", root),
        kelly=dataset_path(catalog, "evaluation_kelly_plot", root),
        monitoring=dataset_path(catalog, "monitoring_report", root),
        registry=dataset_path(catalog, "registry_result", root),
    )


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _alias(bundle_uri: str) -> str | None:
    match = re.match(r"^models:/[^/@]+@(?P<alias>[^/]+)/?$", bundle_uri)
    return match["alias"] if match else None


# ---------------------------------------------------------------------------- the day
class Board:
    """The board's scoring state of one app: which races were scored at which version
    of the day, and how (live, or point in time at the off).

    Args:
        races: The app's race cache (predictions are kept as server-owned races).
        upcoming: Folders of the day's racecards.
        raceday: Folder of pushed results (None: no race day configured).
        now: Clock of the race states (UTC).
    """

    def __init__(
        self,
        races: RaceCache,
        upcoming: tuple[Path, ...],
        raceday: Path | None,
        now: Callable[[], pd.Timestamp] = lambda: pd.Timestamp.now(tz="UTC"),
    ) -> None:
        self.races = races
        self.upcoming = tuple(upcoming)
        self.raceday = raceday
        self.now = now
        self._score_lock = threading.Lock()
        self._cards_lock = threading.Lock()
        self._cards: dict[str, tuple[tuple, DayCard]] = {}
        self._scored: dict[str, str] = {}
        self._basis: dict[str, str] = {}
        self._errors: dict[str, str] = {}

    def days(self) -> dict[str, list[Path]]:
        return day_files(self.upcoming)

    def card(self, day: str, files: list[Path]) -> DayCard:
        """The day's racecards, read again only when a file changed."""
        stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())
        with self._cards_lock:
            cached = self._cards.get(day)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        card = read_day(day, files)
        with self._cards_lock:
            self._cards = {day: (stamp, card)}  # only the day in view is kept
        return card

    def refresh(self, service: InferenceService, card: DayCard) -> str:
        """Score the day's races whose predictions are not current; the day's version."""
        version = day_signature(card, self.raceday)
        with self._score_lock:
            current = self._scored.get(card.day) == version and all(
                self.races.get(_SERVER, r.race_id) is not None or r.race_id in self._errors
                for r in card.races
            )
            if current:
                return version
            results = {r.race_id for r in card.races if race_result(self.raceday, r.race_id) is not None}
            rows, errors = self._entity_rows(service, card)
            self._errors = errors
            live = rows[~rows["race_id"].isin(results)] if len(rows) else rows
            known = self._score_live(service, live)
            settled = results | known
            missing = [rid for rid in settled if self.races.get(_SERVER, rid) is None]
            self._score_point_in_time(service, rows[rows["race_id"].isin(missing)] if len(rows) else rows)
            day_ids = {r.race_id for r in card.races}
            self._basis = {rid: how for rid, how in self._basis.items() if rid in day_ids}
            failed = any(e.startswith("could not score") for e in self._errors.values())
            self._scored = {} if failed else {card.day: version}  # a failure is tried again
            return version

    def warm(self, service: InferenceService) -> None:
        """Score the day the board opens on (the latest day), so no visitor waits for it."""
        days = self.days()
        day = pick_day(list(days))
        if day is not None:
            self.refresh(service, self.card(day, days[day]))

    def stale_day(self, race_id: str) -> DayCard | None:
        """The day holding ``race_id`` if the board scored it and one of its racecards or
        results changed since (a push through another worker process, or the CLI), else
        None. Cheap: a few ``stat`` calls."""
        with self._cards_lock:
            held = [card for _, card in self._cards.values() if any(r.race_id == race_id for r in card.races)]
        if not held:
            return None
        files = self.days().get(held[0].day)
        if not files:
            return None
        card = self.card(held[0].day, files)
        with self._score_lock:
            scored = self._scored.get(card.day)
        return None if scored == day_signature(card, self.raceday) else card

    def rescore(self, service: InferenceService, race_ids: list[str]) -> None:
        """Bring the days holding ``race_ids`` up to date (after their results were pushed),
        so the next page of the board finds its predictions current."""
        wanted = set(race_ids)
        for day, files in self.days().items():
            card = self.card(day, files)
            if wanted & {r.race_id for r in card.races}:
                self.refresh(service, card)

    def _entity_rows(self, service: InferenceService, card: DayCard) -> tuple[pd.DataFrame, dict[str, str]]:
        frames, errors = [], {}
        for name, text in card.texts.items():
            try:
                frames.append(
                    parse_racecard(
                        text, name, service.settings.plausibility, None, service.settings.max_error_details
                    )
                )
            except RacecardRequestError as exc:
                for race in card.races:
                    if race.source == name:
                        errors[race.race_id] = f"{name}: {exc}"
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["race_id"])
        return rows, errors

    def _score_live(self, service: InferenceService, rows: pd.DataFrame) -> set[str]:
        """Score upcoming races from the online store; races it refuses (their result is
        in the store although not pushed here) are returned."""
        refused: set[str] = set()
        while len(rows):
            try:
                answer = service.score_rows(rows, explain=True)
            except LookAheadError as exc:
                late = {v.race_id for v in exc.violations}
                refused |= late
                rows = rows[~rows["race_id"].isin(late)]
                continue
            except Exception as exc:  # shown on the board, with the trace in the log
                logger.exception("board: could not score %s", sorted(set(rows["race_id"])))
                self._errors.update({race_id: f"could not score: {exc}" for race_id in set(rows["race_id"])})
                break
            for race in answer["races"]:
                self.races.put_server(race)
                self._basis[race["race_id"]] = "live"
            break
        return refused

    def _score_point_in_time(self, service: InferenceService, rows: pd.DataFrame) -> None:
        """Races whose result is known and that the server never scored: point in time at
        each race's off (``as_of`` on or after every off reads each race at its off)."""
        if not len(rows):
            return
        as_of = pd.to_datetime(rows["off_time"], utc=True).max().isoformat()
        try:
            answer = service.score_rows(rows, as_of=as_of, explain=True)
        except Exception as exc:  # shown on the board, with the trace in the log
            logger.exception("board: could not score %s point in time", sorted(set(rows["race_id"])))
            for race_id in set(rows["race_id"]):
                self._errors[race_id] = f"could not score point in time: {exc}"
            return
        for race in answer["races"]:
            self.races.put_server(race)
            self._basis[race["race_id"]] = "point in time at the off"

    def view(self, card: DayCard, version: str) -> dict[str, Any]:
        """The template context of the day: races with predictions, states and results."""
        now = self.now()
        races = []
        for race in card.races:
            result = race_result(self.raceday, race.race_id)
            prediction = self.races.get(_SERVER, race.race_id)
            races.append(_race_view(race, prediction, result, now, self._basis.get(race.race_id), self._errors.get(race.race_id)))
        meetings: dict[tuple[str, str], dict[str, Any]] = {}
        for race in races:
            meeting = meetings.setdefault(
                (race["course"], race["country"] or ""),
                {"course": race["course"], "country": race["country"], "races": 0, "first_off": race["off_label"]},
            )
            meeting["races"] += 1
        return {
            "day": card.day,
            "version": version,
            "races": races,
            "meetings": list(meetings.values()),
            "problems": list(card.problems),
            "now": now.isoformat(),
        }


def _fmt_time(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%H:%M UTC")


def _race_view(
    race: Any,
    prediction: dict[str, Any] | None,
    result: dict[str, Any] | None,
    now: pd.Timestamp,
    basis: str | None,
    error: str | None,
) -> dict[str, Any]:
    """One race for the templates (names from the racecard, numbers from the service)."""
    names = {hid: r.get("horse_name") or hid for hid, r in race.runners.items()}
    runners = []
    for r in (prediction or {}).get("runners", []):
        card_runner = race.runners.get(r["horse_id"], {})
        runners.append(
            {
                **r,
                "name": names.get(r["horse_id"], r["horse_id"]),
                "cloth": card_runner.get("cloth_number"),
                "factors": (r.get("explanation") or [])[:3],
            }
        )
    view: dict[str, Any] = {
        "race_id": race.race_id,
        "course": race.course,
        "country": race.country,
        "number": race.number,
        "off": race.off_time.isoformat(),
        "off_label": _fmt_time(race.off_time),
        "distance_m": race.header.get("distance_m"),
        "race_type": race.header.get("race_type"),
        "going": race.header.get("going"),
        "race_class": race.header.get("race_class"),
        "state": race_state(race.off_time, result, now),
        "prediction": prediction,
        "runners": runners,
        "basis": basis,
        "error": error,
        "n_declared": len(race.runners),
        "result": None,
    }
    if runners:
        top = min(runners, key=lambda r: r["rank"])
        view["top"] = top
    if result is not None:
        order = [
            {
                "position": f.get("position"),
                "horse_id": f.get("horse_id"),
                "name": names.get(f.get("horse_id"), f.get("horse_id")),
                "outcome": f.get("outcome"),
            }
            for f in finishing_order(result)
        ]
        view["result"] = {
            "status": result.get("status"),
            "order": order,
            "winners": [f["name"] for f in order if f["position"] == 1],
            "log_loss": log_loss_contribution(runners, result, "p_win") if runners else None,
            "log_loss_combined": log_loss_contribution(runners, result, "p_win_combined") if runners else None,
        }
    return view


# ---------------------------------------------------------------------------- router
class _SecureRoute(APIRoute):
    """A route whose responses carry the board's security headers (no caching) and the
    handler's time (``Server-Timing: board;dur=<ms>``)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except HTTPException as exc:  # 429 of the key check: JSON, with the headers too
                response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers["Server-Timing"] = f"board;dur={1000 * (time.perf_counter() - started):.1f}"
            return response

        return secured


def _number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A number as the board prints it (``–`` when missing)."""
    if value is None or isinstance(value, Undefined):
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "–"
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html"], default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _number
    return env


def board_router(
    authorize: Callable[..., Awaitable[str]],
    races: RaceCache,
    raceday_paths: Any = None,
    reports: ReportPaths | None = None,
    now: Callable[[], pd.Timestamp] | None = None,
) -> APIRouter:
    """The board's routes.

    Args:
        authorize: The app's API key check, ``await authorize(request, api_key)`` ->
            identity, raising ``HTTPException`` 401 (bad key) or 429 (back-off, rate).
        races: The app's race cache.
        raceday_paths: :class:`racecast.inference.results.RaceDayPaths` of the env (the
            upcoming racecards and the pushed results); None: no day to show.
        reports: The model card's reports; None: the project's catalog (default env),
            read when the model card is first opened.
        now: Clock of the race states (tests).

    Returns:
        An ``APIRouter`` to include in the app (not part of the OpenAPI document).
    """
    board = Board(
        races,
        tuple(raceday_paths.upcoming) if raceday_paths is not None else (),
        raceday_paths.raceday if raceday_paths is not None else None,
        **({"now": now} if now is not None else {}),
    )
    templates = _templates()
    resolved: dict[str, ReportPaths | None] = {} if reports is None else {"paths": reports}

    def reports_of() -> ReportPaths | None:
        """The report paths, looked up in the catalog once."""
        if "paths" not in resolved:
            try:
                resolved["paths"] = report_paths()
            except (FileNotFoundError, KeyError, ValueError) as exc:
                logger.warning("board: no model card reports (%s)", exc)
                resolved["paths"] = None
        return resolved["paths"]

    def drift() -> dict[str, Any] | None:
        """Monitoring's verdict for the day page (None without a report)."""
        paths = reports_of()
        monitoring = _read_json(paths and paths.monitoring)
        if monitoring is None:
            return None
        return {"is_drift": bool(monitoring.get("is_drift")), "action": monitoring.get("action")}
    router = APIRouter(route_class=_SecureRoute, include_in_schema=False)
    router.board = board  # the app re-scores the day through it when a result is pushed
    router.reports_of = reports_of  # the app looks the reports up at startup

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(poll_seconds=POLL_SECONDS, **context)
        return HTMLResponse(html, status_code=status_code)

    async def identity(request: Request) -> str | None:
        """The cookie's key identity, or None (no cookie, or a wrong key)."""
        if COOKIE not in request.cookies:
            return None  # not an attempt: no back-off for opening the login page
        try:
            return await authorize(request, unquote(request.cookies[COOKIE]) or None)
        except HTTPException as exc:
            if exc.status_code == 401:
                return None
            raise

    def to_login() -> RedirectResponse:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def service_of(request: Request) -> InferenceService | None:
        return request.app.state.service

    async def refreshed(request: Request, requested: str | None) -> tuple[dict[str, Any], str | None]:
        """(template context of the day, error text)."""
        service = service_of(request)
        if service is None:
            return {}, "the model bundle or the feature store is not loaded"
        days = board.days()
        try:
            day = pick_day(list(days), requested)
        except ValueError as exc:
            return {"days": list(days)}, str(exc)
        if day is None:
            where = ", ".join(str(p) for p in board.upcoming) or "no upcoming folder configured"
            return {"days": list(days)}, f"no racecards {'of ' + requested + ' ' if requested else ''}in {where}"
        card = board.card(day, days[day])
        version = await to_thread.run_sync(
            board.refresh, service, card, limiter=request.app.state.scoring_slots
        )
        context = board.view(card, version)
        context.update(
            days=list(days),
            model_version=str(service.bundle.model_version),
            feature_service=service.feature_service,
        )
        return context, None

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        if await identity(request) is not None:
            return RedirectResponse("/", status_code=303)
        return page("login.html", error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            return page("login.html", 413, error="the login form is too large")
        values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        key = (values.get("api_key") or [""])[0].strip()
        try:
            await authorize(request, key or None)
        except HTTPException as exc:
            message = "wrong API key" if exc.status_code == 401 else str(exc.detail)
            return page("login.html", exc.status_code, error=message)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            quote(key, safe=""),  # any key survives the cookie syntax
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @router.post("/logout")
    async def logout() -> Response:
        return to_login()

    @router.get("/")
    async def day_page(request: Request, day: str | None = Query(None, max_length=10)) -> Response:
        if await identity(request) is None:
            return to_login()
        context, error = await refreshed(request, day)
        return page("day.html", 200 if error is None else 404, error=error, drift=drift(), **context)

    @router.get("/race/{race_id}")
    async def race_page(
        request: Request,
        race_id: str = PathParam(max_length=200),
        day: str | None = Query(None, max_length=10),
    ) -> Response:
        if await identity(request) is None:
            return to_login()
        context, error = await refreshed(request, day)
        race = next((r for r in context.get("races", []) if r["race_id"] == race_id), None)
        if error is None and race is None:
            error = f"race {race_id} is not on the racecards of {context.get('day')}"
        return page("race.html", 200 if error is None else 404, error=error, race=race, **context)

    @router.get("/board/status")
    async def status(request: Request, day: str | None = Query(None, max_length=10)) -> Response:
        if await identity(request) is None:
            return JSONResponse({"detail": "log in first"}, status_code=401)
        days = board.days()
        try:
            chosen = pick_day(list(days), day)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        if chosen is None:
            return JSONResponse({"day": None, "version": None})
        card = board.card(chosen, days[chosen])
        return JSONResponse({"day": chosen, "version": day_signature(card, board.raceday)})

    @router.get("/model")
    async def model_card(request: Request) -> Response:
        if await identity(request) is None:
            return to_login()
        service = service_of(request)
        paths = reports_of()
        bundle = None if service is None else service.bundle
        context = {
            "service": service,
            "bundle": bundle,
            "alias": None if service is None else _alias(service.settings.bundle_uri),
            "bundle_uri": None if service is None else service.settings.bundle_uri,
            "registry": _read_json(paths and paths.registry),
            "evaluation": _read_json(paths and paths.evaluation),
            "monitoring": _read_json(paths and paths.monitoring),
            "plots": {n: paths is not None and getattr(paths, n).is_file() for n in _PLOTS},
            "paths": paths,
        }
        return page("model.html", **context)

    @router.get("/board/plots/{name}.png")
    async def plot(request: Request, name: str = PathParam(max_length=40)) -> Response:
        if await identity(request) is None:
            return JSONResponse({"detail": "log in first"}, status_code=401)
        paths = reports_of()
        if name not in _PLOTS or paths is None or not getattr(paths, name).is_file():
            return JSONResponse({"detail": f"no plot {name!r}"}, status_code=404)
        return FileResponse(getattr(paths, name), media_type="image/png")

    @router.get("/board/static/{name}")
    async def static(name: str = PathParam(max_length=40)) -> Response:
        if name not in _STATIC:
            return JSONResponse({"detail": f"no static file {quote(name)!r}"}, status_code=404)
        response = FileResponse(_HERE / "static" / name, media_type=_STATIC[name])
        response.headers["Cache-Control"] = "no-cache"
        return response

    return router
