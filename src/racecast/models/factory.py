"""Build race models from plain-dict specs (as written in Kedro parameters).

A spec is::

    {"module": "racecast.models.zoo",   # optional, this is the default
     "class": "LGBMRankerModel",         # required
     "kwargs": {"n_estimators": 200}}    # optional constructor arguments

A kwarg value that is itself a spec (a dict with a ``"class"`` key and no keys other
than ``module`` / ``class`` / ``kwargs``) is built first, so a
:class:`~racecast.models.semantic.SemanticScorer` can be given its provider::

    {"class": "SemanticScorer",
     "kwargs": {"provider": {"class": "OpenAICompatibleProvider",
                             "kwargs": {"base_url": "http://localhost:8000/v1",
                                        "model": "bge-small"}}}}
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from racecast.models.base import RaceModel

DEFAULT_MODULE = "racecast.models.zoo"
SPEC_KEYS = frozenset({"module", "class", "kwargs"})


def _is_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and "class" in value and set(value) <= SPEC_KEYS


def _instantiate(spec: Any, where: str) -> Any:
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{where} must be a dict with 'class' (and optional 'module', 'kwargs'), "
            f"got {type(spec).__name__}"
        )
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; allowed: {sorted(SPEC_KEYS)}")
    if "class" not in spec:
        raise ValueError(f"{where} lacks the required key 'class'")
    module_name = spec.get("module") or DEFAULT_MODULE
    class_name = spec["class"]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"{where}['module'] = {module_name!r} cannot be imported: {error}"
        ) from error
    cls = getattr(module, str(class_name), None)
    if not inspect.isclass(cls):
        available = sorted(
            name
            for name, obj in vars(module).items()
            if inspect.isclass(obj) and issubclass(obj, RaceModel) and not inspect.isabstract(obj)
        )
        raise AttributeError(
            f"{where}['class'] = {class_name!r} is not a class of module {module_name!r}; "
            f"race models there: {available}"
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{where}['kwargs'] must be a dict, got {type(kwargs).__name__}")
    parameters = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        valid = [name for name in parameters if name != "self"]
        bad = sorted(set(kwargs) - set(valid))
        if bad:
            raise TypeError(
                f"{where}: {class_name} got unknown kwargs {bad}; valid: {valid}"
                + (
                    " (library-only arguments go into 'model_params')"
                    if "model_params" in valid
                    else ""
                )
            )
    built = {
        key: _instantiate(value, f"{where}['kwargs'][{key!r}]") if _is_spec(value) else value
        for key, value in kwargs.items()
    }
    return cls(**built)


def build_model(spec: Mapping[str, Any]) -> RaceModel:
    """Instantiate the race model a spec describes (see the module docstring).

    Args:
        spec: ``{"module": ..., "class": ..., "kwargs": {...}}``.

    Returns:
        The unfitted model.

    Raises:
        TypeError: If the spec or its kwargs are not dicts, a kwarg is unknown, or the
            class is not a :class:`~racecast.models.base.RaceModel`.
        ValueError: If the spec has unknown keys or lacks ``class``.
        ImportError: If the module cannot be imported.
        AttributeError: If the module has no such class.
    """
    model = _instantiate(spec, "spec")
    if not isinstance(model, RaceModel):
        raise TypeError(f"spec['class'] = {spec['class']!r} is not a RaceModel subclass")
    return model
