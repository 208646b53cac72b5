"""Serving: the inference bundle and its MLflow model registry.

* :mod:`racecast.serving.bundle`: :class:`InferenceBundle` (base models, stacker, blend;
  ``predict`` and ``explain`` on ``build_features`` rows) and :func:`build_bundle`.
* :mod:`racecast.serving.registry`: register the bundle as ``racecast-win`` (aliases
  ``challenger`` / ``champion``) and ``load_bundle("models:/racecast-win@champion")``;
  imported on its own because it imports MLflow.
"""

from .bundle import InferenceBundle, build_bundle

__all__ = ["InferenceBundle", "build_bundle"]
