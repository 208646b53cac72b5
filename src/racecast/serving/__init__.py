"""Serving: the FastAPI app and its HTTP pieces (auth, limits, middleware, metrics, board).

The inference bundle, its MLflow registry and the scoring of the answer live one layer
down, in :mod:`racecast.inference` (:mod:`~racecast.inference.bundle`,
:mod:`~racecast.inference.registry`, :mod:`~racecast.inference.scoring`).
"""
