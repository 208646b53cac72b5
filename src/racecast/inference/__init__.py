"""Inference: the service object every outer room (HTTP app, CLI, Kedro scoring) calls.

``InferenceService`` scores racecards online; :mod:`racecast.inference.guard` is the one
point-in-time guard; :mod:`racecast.inference.results` takes race results in on race day.

* :mod:`racecast.inference.bundle`: :class:`InferenceBundle` (base models, stacker, blend;
  ``predict`` and ``explain`` on ``build_features`` rows) and :func:`build_bundle`;
* :mod:`racecast.inference.registry`: register the bundle as ``racecast-win`` (aliases
  ``challenger`` / ``champion``) and ``load_bundle("models:/racecast-win@champion")``;
  imported on its own because it imports MLflow;
* :mod:`racecast.inference.scoring`: the answer for scored runners (probabilities, fair
  odds, edge, stakes, staleness, explanation).
"""
