"""Where one race's serving time goes: every stage of ``POST /api/v1/predict``, in process.

Run from the repository root after ``kedro run`` (a bundle and a materialized store)::

    .venv/bin/python benchmarks/serving_profile.py \\
        [--racecard data/01_raw/upcoming/<day>.racecard.json] [--bundle PATH_OR_URI] \\
        [--env ENV] [--calls 300]

The largest race of the racecard (the first upcoming racecard by default) is scored
``--calls`` times through each stage on its own, with the objects the service keeps
(one :class:`~racecast.inference.service.InferenceService`, its online reader):

* ``parse``: the body's JSON check and the racecard parser (:func:`parse_racecard`);
* ``online_read``: the lean online read with the point-in-time guard's event times
  (the reader's decoded-row cache warm, as for a race asked for again);
* ``transform``: ``build_features`` of the read state; ``features``: read + transform
  + odds (:meth:`InferenceService.features`);
* ``model:<name>``: each base model's ``predict_proba_array`` on the race;
  ``stacker``, ``blend``: the meta-learner and the combined track;
  ``bundle_predict``: the whole :meth:`InferenceBundle.predict`;
* ``score_races``: probabilities -> the response's races (fair odds, stakes);
* ``response``: the response model's validation and JSON bytes (what FastAPI does
  with a ``response_model`` and its default response class: pydantic's
  ``validate_python`` then ``dump_json``);
* ``service``: :meth:`InferenceService.score_text` (parse to races);
* ``features_kept``, ``service_kept``, ``asgi_kept``: ``features``, ``service`` and
  ``asgi`` of the same race at moving prices (64 price variants rotated,
  ``benchmarks/bodies.py``) with what the service keeps: the race's fundamental rows
  and fundamental probabilities are kept, only its market features and the combined track
  are computed. Every other stage runs with nothing kept (``InferenceService.kept_races``
  and ``kept_predictions`` None), so it measures what it measured before;
* ``asgi``: the app in process, called as an ASGI server calls it (a scope, one body
  message, the response messages collected: no client library, no socket): routing, auth,
  guards, middleware, the thread hand-off, the response;
* ``asgi_app``: the same with the service's ``score_text`` answering its stored result at
  once: the app's own share of a request (the service's share is ``service``);
* ``asgi_bare``: a bare Starlette route that reads the body, hands ``score_text`` to a
  worker thread and writes the JSON: the floor of any app around the service;
* ``asgi_httpx``: ``asgi`` through ``httpx.ASGITransport`` (httpx's own client cost
  included, as earlier figures of this stage were).

Prints p50 / p95 / p99 in milliseconds per stage (and CPU time: the stage's cost without
the waits for a core on a busy machine; the calling thread's for the synchronous stages,
threads the stage starts, such as Feast's, not counted; the whole process's for the
``asgi*`` stages, whose work runs on the event loop and a worker thread) with the
1-minute load average and
writes ``data/08_reporting/serving_profile.json``. With ``--cprofile N`` it also prints
the top ``N`` functions of a cProfile of ``service`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import itertools
import json
import logging
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bodies import repriced_bodies  # benchmarks/bodies.py
from machine import machine  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "08_reporting" / "serving_profile.json"


def _timed(func: Callable[[], Any], calls: int) -> dict[str, float]:
    """Wall-time p50 / p95 / p99 and the calling thread's CPU-time p50 / p95 (ms)."""
    func()  # warm-up
    seconds, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.thread_time()
        func()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return _figures(seconds, cpu)


def _figures(seconds: list[float], cpu: list[float]) -> dict[str, float]:
    ms, cpu_ms = np.asarray(seconds) * 1000.0, np.asarray(cpu) * 1000.0
    out = {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)}
    out.update({f"cpu_p{q}_ms": round(float(np.percentile(cpu_ms, q)), 3) for q in (50, 95)})
    return out


async def _asgi_call(app: Any, body: bytes) -> list[dict[str, Any]]:
    """``POST /api/v1/predict`` as an ASGI server sends it; the response messages."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/predict",
        "raw_path": b"/api/v1/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"racecast"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("racecast", 80),
    }
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise SystemExit(f"ASGI predict: {sent[0]['status']} {sent[1].get('body', b'')[:300]!r}")
    return sent


async def _asgi_stages(
    app: Any, text: str, result: dict[str, Any], calls: int, variants: list[str]
) -> dict[str, dict[str, float]]:
    """The ``asgi*`` stages (wall time and the process's CPU time per request)."""
    import httpx
    from anyio import to_thread
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    body = text.encode("utf-8")

    async def timed(call: Callable[[], Any]) -> dict[str, float]:
        await call()  # warm-up
        seconds, cpu = [], []
        for _ in range(calls):
            start, start_cpu = time.perf_counter(), time.process_time()
            await call()
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return _figures(seconds, cpu)

    async with app.router.lifespan_context(app):
        service = app.state.service
        kept = _kept(service)
        _keep(service, None)  # every request reads, guards, transforms and predicts its race

        async def bare_route(request: Request) -> Response:
            scored = await to_thread.run_sync(service.score_text, (await request.body()).decode())
            return Response(json.dumps(scored), media_type="application/json")

        bare = Starlette(routes=[Route("/api/v1/predict", bare_route, methods=["POST"])])
        out = {
            "asgi": await timed(lambda: _asgi_call(app, body)),
            "asgi_bare": await timed(lambda: _asgi_call(bare, body)),
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racecast") as client:
            headers = {"Content-Type": "application/json"}
            out["asgi_httpx"] = await timed(
                lambda: client.post("/api/v1/predict", content=body, headers=headers)
            )
        service.score_text = lambda *_, **__: result  # the app alone: scoring answers at once
        try:
            out["asgi_app"] = await timed(lambda: _asgi_call(app, body))
        finally:
            del service.score_text
        if kept is not None:
            _keep(service, kept)
            bodies = itertools.cycle([v.encode("utf-8") for v in variants])
            out["asgi_kept"] = await timed(lambda: _asgi_call(app, next(bodies)))
    return out


def _kept(service: Any) -> tuple[Any, Any] | None:
    """What the service keeps between requests (its kept races and kept predictions)."""
    kept = (getattr(service, "kept_races", None), getattr(service, "kept_predictions", None))
    return None if kept[0] is None else kept


def _keep(service: Any, kept: tuple[Any, Any] | None) -> None:
    """Let the service keep races and predictions between requests (None: nothing kept)."""
    service.kept_races, service.kept_predictions = kept or (None, None)


def _race_body(path: Path) -> tuple[str, int]:
    """The largest race of a racecard file as a one-race racecard text."""
    document = json.loads(path.read_text(encoding="utf-8"))
    pairs = [(m, r) for m in document.get("meetings", []) for r in m.get("races", [])]
    meeting, race = max(
        pairs, key=lambda mr: sum(not x.get("non_runner", False) for x in mr[1]["runners"])
    )
    body = {**document, "meetings": [{**meeting, "races": [race]}]}
    return json.dumps(body), sum(not x.get("non_runner", False) for x in race["runners"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--racecard", type=Path, default=None)
    parser.add_argument(
        "--bundle", default=None, help="Bundle URI or pickle (default: the champion)."
    )
    parser.add_argument("--env", default=None)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--cprofile", type=int, default=0, help="Print the top N functions.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.chdir(ROOT)

    from pydantic import TypeAdapter

    from racecast.features import store, transform
    from racecast.inference.guard import check_point_in_time
    from racecast.inference.registry import load_bundle
    from racecast.inference.scoring import score_races
    from racecast.inference.service import InferenceService, parse_racecard
    from racecast.inference.settings import ServingSettings
    from racecast.serving.app import create_app
    from racecast.serving.schemas import PredictResponse

    racecard = (
        args.racecard or sorted((ROOT / "data" / "01_raw" / "upcoming").glob("*.racecard.json"))[0]
    )
    text, runners = _race_body(racecard)
    settings = ServingSettings.from_project(
        args.env, bundle_uri=args.bundle, credentials_path=None, allow_anonymous=True
    )
    bundle = load_bundle(settings.bundle_uri)
    feature_store = store.get_store(settings.feature_repo)
    service = InferenceService(settings, bundle, feature_store)
    kept = _kept(service)
    _keep(service, None)  # the stages below measure a race read, guarded, transformed, predicted
    rows = parse_racecard(text)
    reader = service.reader()
    features = service.features(rows)
    served, _ = reader.read_with_times(rows)

    stages: dict[str, Callable[[], Any]] = {
        "parse": lambda: parse_racecard(text, "request", settings.plausibility, None),
        "online_read": lambda: check_point_in_time(rows, reader.read_with_times(rows)[1]),
        "transform": lambda: transform.build_features(rows, served, settings.feature_params),
        "features": lambda: service.features(rows),
    }
    from racecast.inference.rows import TimeOrdered

    values, odds = bundle._input_arrays(features)
    ordered = TimeOrdered.of(features, values, bundle._columns)
    stages["bundle_inputs"] = lambda: TimeOrdered.of(
        features, bundle._input_arrays(features)[0], bundle._columns
    )
    for name, model in bundle.base_models.items():
        X = ordered.columns(model)
        stages[f"model:{name}"] = lambda m=model, X=X: m.predict_proba_array(X, ordered.layout)
    base = {
        f"p_{n}": ordered.normalised(m.predict_proba_array(ordered.columns(m), ordered.layout))
        for n, m in bundle.base_models.items()
    }
    for n in bundle.skipped_models:
        base[f"p_{n}"] = ordered.normalised(np.ones(len(ordered.order)))
    stacked = np.column_stack(
        [
            base[c] if c in base else ordered.values[:, ordered.position[c]]
            for c in (str(c) for c in bundle.stacker.feature_names_in_)
        ]
    )
    stages["stacker"] = lambda: bundle.stacker.predict_proba_array(stacked, ordered.layout)
    p_fund = ordered.normalised(bundle.stacker.predict_proba_array(stacked, ordered.layout))
    p_market = (
        np.full(len(p_fund), 1.0 / len(p_fund))
        if np.isnan(odds).any()
        else (1 / odds) / (1 / odds).sum()
    )
    stages["blend"] = lambda: bundle._blend(p_fund, p_market, np.zeros(len(p_fund)), ordered)
    stages["bundle_predict"] = lambda: bundle.predict(features)
    predictions = bundle.predict(features)

    def races() -> list[dict[str, Any]]:
        return score_races(
            predictions,
            rows,
            features,
            None,
            model_version=str(bundle.model_version),
            config=service.scoring,
            staking_validation=bundle.staking_validation,
        )

    stages["score_races"] = races
    result = service.score_rows(rows)
    # what FastAPI does with a response_model and its default response class: pydantic
    # validates the endpoint's dict and writes the JSON bytes itself (no jsonable_encoder)
    adapter = TypeAdapter(PredictResponse)
    stages["response"] = lambda: adapter.dump_json(adapter.validate_python(result))
    stages["service"] = lambda: service.score_text(text)

    variants = repriced_bodies(text)
    if kept is not None:  # the same race at moving prices, its fundamentals kept
        repriced = itertools.cycle([parse_racecard(v) for v in variants])
        texts = itertools.cycle(variants)

        def with_kept(call: Callable[[], Any]) -> Callable[[], Any]:
            def timed_call() -> Any:
                _keep(service, kept)
                try:
                    return call()
                finally:
                    _keep(service, None)

            return timed_call

        stages["features_kept"] = with_kept(lambda: service.features(next(repriced)))
        stages["service_kept"] = with_kept(lambda: service.score_text(next(texts)))

    app = create_app(settings, bundle=bundle, feature_store=feature_store, freeze_gc=False)
    timings = {name: _timed(func, args.calls) for name, func in stages.items()}
    timings.update(asyncio.run(_asgi_stages(app, text, result, args.calls, variants)))
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "racecard": str(racecard),
        "runners": runners,
        "bundle": settings.bundle_uri,
        "models": sorted(bundle.base_models),
        "skipped_models": sorted(bundle.skipped_models),
        "calls": args.calls,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "stages": timings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2), encoding="utf-8")
    say = sys.stdout.write
    say(f"{runners} runners, load {out['load_average']}, {args.calls} calls per stage\n")
    for name, figures in timings.items():
        say(
            f"  {name:24s} p50 {figures['p50_ms']:8.3f}  p95 {figures['p95_ms']:8.3f}  "
            f"p99 {figures['p99_ms']:8.3f} ms"
            + (f"  cpu p50 {figures['cpu_p50_ms']:7.3f}" if "cpu_p50_ms" in figures else "")
            + "\n"
        )
    if args.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            service.score_text(text)
        profile.disable()
        stream = io.StringIO()
        pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(args.cprofile)
        say(stream.getvalue())
    sys.stderr.write(f"written to {args.out}\n")
    return out


if __name__ == "__main__":
    main()
