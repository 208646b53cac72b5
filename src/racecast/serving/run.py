"""``racecast serve --workers N``'s launcher: uvicorn's supervisor in a lean interpreter.

uvicorn starts each worker with ``multiprocessing``'s *spawn*, which imports the parent's
``__main__`` module in the child before the worker answers the supervisor's liveness
ping, and kills a worker that stays silent for 5 s. ``racecast.cli`` imports Kedro (~1 s
on a quiet machine, over 5 s on a busy one), so ``racecast serve`` checks its settings
and then replaces itself (``exec``, same PID) with ``python -m racecast.serving.run``,
whose module imports only uvicorn. Each worker builds its app with
:func:`racecast.serving.app.serve_app` (the options travel in ``RACECAST_SERVE_ARGS``).
"""

from __future__ import annotations

import argparse

import uvicorn

#: uvicorn's import string of the app factory (``racecast.serving.app.serve_app``).
FACTORY = "racecast.serving.app:serve_app"


def main(argv: list[str] | None = None) -> None:
    """Run ``--workers`` uvicorn worker processes of the app factory on ``--host:--port``."""
    parser = argparse.ArgumentParser(prog="python -m racecast.serving.run")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    uvicorn.run(
        FACTORY, factory=True, host=args.host, port=args.port, workers=args.workers, log_level="info", access_log=False
    )


if __name__ == "__main__":
    main()
