"""The MLflow model registry of the inference bundle: register, promote, load.

Every registration logs the pickled :class:`~racecast.inference.bundle.InferenceBundle` as
an ``mlflow.pyfunc`` model (:class:`InferenceBundleModel`, whose ``predict`` returns the
bundle's predictions) under :data:`MODEL_NAME` and moves the alias :data:`CHALLENGER`
onto the new version. The new version also becomes :data:`CHAMPION` when there is no
champion yet, or when its holdout log loss (version tag :data:`LOG_LOSS_TAG`) is strictly
lower than the champion's. A champion without that tag cannot be compared and keeps its
alias (move it by hand with ``MlflowClient.set_registered_model_alias``).

Tracking and registry URIs come from MLflow's environment (``MLFLOW_TRACKING_URI``) or
from kedro-mlflow (``conf/base/mlflow.yml``), which also opens the run a ``kedro run``
logs to; outside a run, one is started in the current experiment.

:func:`load_bundle` reads the bundle back from ``models:/<name>@<alias>``,
``models:/<name>/<version>`` or a pickle file, without going through pyfunc. Unpickling
runs code: load bundles only from a registry or a path you trust.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import re
import tempfile
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

from racecast.inference.bundle import OUTPUT_COLUMNS, InferenceBundle

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLE_ARTIFACT",
    "CHALLENGER",
    "CHAMPION",
    "InferenceBundleModel",
    "LOG_LOSS_TAG",
    "MODEL_NAME",
    "bundle_signature",
    "load_bundle",
    "model_description",
    "promote_if_better",
    "read_bundle",
    "register_model",
]

MODEL_NAME = "racecast-win"
CHALLENGER = "challenger"
CHAMPION = "champion"
LOG_LOSS_TAG = "holdout_log_loss"

#: Artifact key and file name of the pickled bundle inside the logged pyfunc model.
_ARTIFACT_KEY = "bundle"
_BUNDLE_FILE = "inference_bundle.pkl"
#: Path of the pickled bundle relative to the model's root (pyfunc copies artifacts here).
BUNDLE_ARTIFACT = f"artifacts/{_BUNDLE_FILE}"
#: Name of the logged model inside the run.
_LOGGED_MODEL_NAME = "inference_bundle"

#: Distributions the bundle's models need at load time (pinned to the installed versions).
_REQUIREMENTS = (
    "mlflow",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "catboost",
    "xgboost",
    "torch",
    "pytorch-tabnet",
)

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


class InferenceBundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict(features)`` is :meth:`InferenceBundle.predict`.

    The bundle itself is the model's artifact (:data:`BUNDLE_ARTIFACT`), read in
    :meth:`load_context`; the wrapper pickles without it.
    """

    def load_context(self, context: Any) -> None:
        """Read the pickled bundle from the model's artifacts."""
        self.bundle = read_bundle(context.artifacts[_ARTIFACT_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Win probabilities of the runners of ``model_input`` (a feature frame).

        Args:
            context: The pyfunc context (unused).
            model_input: Feature rows, see :meth:`InferenceBundle.predict`.
            params: Unused.

        Returns:
            The bundle's prediction frame.
        """
        return self.bundle.predict(pd.DataFrame(model_input))


def read_bundle(path: str | Path) -> InferenceBundle:
    """Unpickle an :class:`InferenceBundle` from a file.

    Args:
        path: Pickle file written by Kedro's ``pickle.PickleDataset`` or the registry.

    Returns:
        The bundle.

    Raises:
        FileNotFoundError: If the file does not exist.
        TypeError: If the file holds something else than a bundle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no inference bundle pickle at this path")
    with path.open("rb") as handle:
        bundle = pickle.load(handle)
    if not isinstance(bundle, InferenceBundle):
        raise TypeError(f"{path}: holds a {type(bundle).__name__}, not an InferenceBundle")
    return bundle


def bundle_signature(bundle: InferenceBundle) -> ModelSignature:
    """MLflow signature of the pyfunc model.

    Inputs: ``race_id`` and ``horse_id`` (strings), every fundamental feature (double)
    and the optional ``odds_final`` (double). ``off_time`` is left out (MLflow's datetime
    type refuses time zones; the bundle does not need it). Outputs: the bundle's
    prediction columns.

    Args:
        bundle: The bundle.

    Returns:
        The signature.
    """
    inputs = [ColSpec(DataType.string, "race_id"), ColSpec(DataType.string, "horse_id")]
    inputs += [ColSpec(DataType.double, name) for name in bundle.fundamental_features]
    inputs.append(ColSpec(DataType.double, "odds_final", required=False))
    outputs = [
        ColSpec(DataType.string if name in ("race_id", "horse_id") else DataType.double, name)
        for name in OUTPUT_COLUMNS
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _pip_requirements() -> list[str]:
    """``name==version`` of every installed distribution in :data:`_REQUIREMENTS`."""
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            logger.warning("registry: %s is not installed; left out of the requirements", name)
    return pins


@contextlib.contextmanager
def _run() -> Iterator[mlflow.ActiveRun]:
    """The active MLflow run (kedro-mlflow's), or a new one in the current experiment."""
    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    with mlflow.start_run(run_name=f"register {MODEL_NAME}") as run:
        yield run


def _champion_log_loss(client: MlflowClient, name: str) -> tuple[str | None, float | None]:
    """(version, holdout log loss) of the champion; ``(None, None)`` without a champion.

    The log loss is None when the champion lacks the :data:`LOG_LOSS_TAG` tag.
    """
    registered = client.get_registered_model(name)
    version = (registered.aliases or {}).get(CHAMPION)
    if version is None:
        return None, None
    tag = client.get_model_version(name, str(version)).tags.get(LOG_LOSS_TAG)
    try:
        return str(version), None if tag is None else float(tag)
    except ValueError:
        logger.warning(
            "registry: champion %s has a malformed %s tag %r", version, LOG_LOSS_TAG, tag
        )
        return str(version), None


def promote_if_better(
    client: MlflowClient, name: str, version: str, holdout_log_loss: float
) -> tuple[bool, str | None, float | None]:
    """Make ``version`` the champion if there is none or it beats the champion's log loss.

    Args:
        client: MLflow client.
        name: Registered model name.
        version: The candidate version.
        holdout_log_loss: The candidate's holdout log loss (lower is better).

    Returns:
        ``(promoted, previous champion version, previous champion log loss)``; the last
        two are None without a champion (the log loss also when it was never recorded).
    """
    champion, champion_loss = _champion_log_loss(client, name)
    if champion is None:
        promoted = True
        reason = "no champion yet"
    elif champion == str(version):
        promoted, reason = False, "already the champion"
    elif champion_loss is None:
        promoted = False
        reason = f"champion {champion} has no {LOG_LOSS_TAG} tag to compare with"
    else:
        promoted = holdout_log_loss < champion_loss
        reason = f"log loss {holdout_log_loss:.5f} vs champion {champion}'s {champion_loss:.5f}"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, str(version))
    logger.info(
        "registry: %s version %s %s as %s (%s)",
        name,
        version,
        "promoted" if promoted else "not promoted",
        CHAMPION,
        reason,
    )
    return promoted, champion, champion_loss


def model_description(bundle: InferenceBundle) -> str:
    """The registry description of a bundle version: what it serves and what it leaves out.

    Args:
        bundle: The registered bundle.

    Returns:
        Markdown text (the MLflow UI shows it on the version's page).
    """
    lines = [
        f"racecast inference bundle `{bundle.fingerprint}` on feature service "
        f"`{bundle.feature_service}`, trained until {bundle.trained_until.isoformat()}.",
        "",
        f"Serves base models: {', '.join(sorted(bundle.base_models))}.",
    ]
    subset = getattr(bundle, "serving_subset", {}) or {}
    if subset.get("dropped"):
        lines.append(
            f"Serving subset: the stacker and blend were refitted without "
            f"{', '.join(subset['dropped'])} ({subset.get('reason', '')}); served "
            "probabilities equal the subset's own evaluated ones (serving_stacked, "
            "serving_blend in evaluation.json)."
        )
    if bundle.skipped_models:
        lines.append(
            f"Leaves out (stacker weight ~0): {', '.join(sorted(bundle.skipped_models))}; "
            + (
                "the stacker does not use them, so served probabilities equal the evaluated "
                "stacked model's exactly."
                if bundle.exact
                else "the stacker uses some of them: served probabilities differ from the "
                "evaluated stacked model's."
            )
        )
    else:
        lines.append("Leaves out no model: the stacker uses every one.")
    if bundle.stacker_weights:
        lines += [
            "",
            "| model | stage-A coef | stage-B gain share | stage-B splits |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {w['stage_a_coef']:.4f} | {w['stage_b_gain_share']:.4f} | "
            f"{w['stage_b_splits']} |"
            for name, w in sorted(bundle.stacker_weights.items())
        ]
    return "\n".join(lines)


def register_model(
    bundle: InferenceBundle, holdout_log_loss: float, model_name: str = MODEL_NAME
) -> dict[str, Any]:
    """Log the bundle as a pyfunc model, register it as challenger, promote if better.

    Args:
        bundle: The bundle to register.
        holdout_log_loss: Holdout log loss of its fundamental (stacked) model.
        model_name: Registered model name.

    Returns:
        ``{"model_name", "version", "aliases", "promoted", "holdout_log_loss",
        "champion_version", "champion_log_loss", "run_id", "model_uri"}``;
        ``champion_*`` describe the champion before this registration.

    Raises:
        ValueError: If ``holdout_log_loss`` is not a finite number.
    """
    try:
        loss = float(holdout_log_loss)
    except (TypeError, ValueError):
        loss = math.nan
    if not math.isfinite(loss):
        raise ValueError(f"holdout_log_loss must be a finite number, got {holdout_log_loss!r}")
    client = MlflowClient()
    with _run() as run, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / _BUNDLE_FILE
        with path.open("wb") as handle:
            pickle.dump(bundle, handle, protocol=pickle.HIGHEST_PROTOCOL)
        with warnings.catch_warnings():
            # The signature is explicit; registration has no feature rows to use as an
            # input example, which MLflow would otherwise warn about on every run.
            warnings.filterwarnings("ignore", message=r".*input example was not provided")
            info = mlflow.pyfunc.log_model(
                name=_LOGGED_MODEL_NAME,
                python_model=InferenceBundleModel(),
                artifacts={_ARTIFACT_KEY: str(path)},
                signature=bundle_signature(bundle),
                pip_requirements=_pip_requirements(),
                registered_model_name=model_name,
            )
        run_id = run.info.run_id
    version = str(info.registered_model_version)
    tags = {
        LOG_LOSS_TAG: repr(loss),
        "feature_service": bundle.feature_service,
        "trained_until": bundle.trained_until.isoformat(),
        "fingerprint": bundle.fingerprint,
        "base_models": ",".join(sorted(bundle.base_models)),
        "skipped_models": ",".join(sorted(bundle.skipped_models)) or "none",
        "serving_subset_dropped": ",".join((bundle.serving_subset or {}).get("dropped", []))
        or "none",
        "exact": str(bundle.exact).lower(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.update_model_version(model_name, version, description=model_description(bundle))
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    promoted, champion, champion_loss = promote_if_better(client, model_name, version, loss)
    aliases = sorted(client.get_model_version(model_name, version).aliases)
    return {
        "model_name": model_name,
        "version": version,
        "aliases": aliases,
        "promoted": promoted,
        "holdout_log_loss": loss,
        "champion_version": champion,
        "champion_log_loss": champion_loss,
        "run_id": run_id,
        "model_uri": f"models:/{model_name}/{version}",
    }


def load_bundle(uri: str | Path) -> InferenceBundle:
    """Load an inference bundle from the registry or from a pickle file.

    Args:
        uri: ``models:/<name>@<alias>`` (e.g. ``models:/racecast-win@champion``),
            ``models:/<name>/<version>``, or a filesystem path to a bundle pickle.

    Returns:
        The bundle. Loaded from the registry, its ``model_version`` is
        ``<name>/<version>`` of the resolved registry version.

    Raises:
        ValueError: If a ``models:/`` URI is malformed.
        FileNotFoundError: If the path does not exist.
        mlflow.exceptions.MlflowException: If the model, alias or version does not exist.
    """
    text = str(uri)
    if not text.startswith("models:/"):
        return read_bundle(text)
    match = _MODELS_URI.match(text)
    if match is None:
        raise ValueError(
            f"model URI {text!r}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    name = match["name"]
    client = MlflowClient()
    if match["alias"]:
        version = str(client.get_model_version_by_alias(name, match["alias"]).version)
    else:
        version = str(client.get_model_version(name, match["version"]).version)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}/{BUNDLE_ARTIFACT}", dst_path=tmp
        )
        bundle = read_bundle(local)
    bundle.model_version = f"{name}/{version}"
    logger.info("loaded %r from %s", bundle, text)
    return bundle
