"""Settings of the inference service (``racecast serve``, ``racecast predict``).

Precedence, lowest to highest: the defaults below, the ``serving`` block of the env's
parameters (``conf/base/parameters/serving.yml``, overridden by ``conf/<env>/``),
environment variables ``RACECAST_<FIELD>`` (e.g. ``RACECAST_BUNDLE_URI``,
``RACECAST_RATE_LIMIT_PER_MINUTE``, ``RACECAST_ALLOW_ANONYMOUS=true``) and explicit
overrides (the CLI options). The feature store location and the feature parameters come
from the env's ``features`` parameters, the same ones the training set was built with.

API keys are not settings values read from the environment here: see
:mod:`racecast.serving.auth` (``conf/local/credentials.yml`` and ``RACECAST_API_KEYS``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from racecast.inference.scoring import DEFAULT_STAKING_TRACK
from racecast.ingestion.plausibility import Plausibility

__all__ = ["ENV_PREFIX", "ServingSettings", "SettingsError"]

#: The registry's champion: what ``racecast serve`` scores with unless told otherwise.

#: Prefix of the environment variables that override settings.
ENV_PREFIX = "RACECAST_"

#: Fields that are never read from ``RACECAST_<FIELD>`` variables (``RACECAST_API_KEYS``
#: is comma-separated and read by :mod:`racecast.serving.auth`).
_NOT_FROM_ENV = frozenset({"api_keys", "feature_params", "plausibility"})


class SettingsError(ValueError):
    """Settings that cannot run the service; the message names the setting."""


class ServingSettings(BaseModel):
    """Everything the inference service needs besides the bundle and the feature store.

    Attributes:
        bundle_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a path to
            a bundle pickle (see :func:`racecast.inference.registry.load_bundle`); no
            default here: a project's is ``serving.bundle_uri`` (its env's champion).
        feature_repo: Feast repo folder (``feature_store.yaml``).
        feature_service: Feast FeatureService to read; None = the bundle's own.
        feature_params: ``features.compute`` parameters (the training set's).
        api_keys: Extra API keys in plain text or as ``sha256:<hex>`` hashes (tests and
            programmatic use); hashed at startup, never kept in clear.
        credentials_path: YAML file with ``racecast_api_keys: [...]`` (None: none).
        allow_anonymous: Serve without API keys (``racecast serve --insecure``); without
            it a service with no key configured refuses to start.
        rate_limit_per_minute: Requests per API key per sliding minute.
        max_body_bytes: Largest request body accepted (413 beyond).
        max_json_depth: Deepest JSON nesting of a body (422 beyond, checked before parsing).
        max_races_per_request: Races (or results) in one body (422 beyond).
        max_runners_per_race: Runners (or finishers) of one race (422 beyond).
        max_string_length: Longest string or object key of a body (422 beyond).
        max_object_keys: Most keys of one JSON object (422 beyond).
        max_error_details: Most problems listed in one 422 body.
        plausibility: Plausible odds, ratings and off times
            (:class:`racecast.ingestion.plausibility.Plausibility`, the ranges batch
            ingestion uses); the off-time window is around the request's ``as_of`` or now.
        auth_free_failures: Failed API key attempts per client address before back-off.
        auth_backoff_s: First back-off after the free failures; doubles with each failure.
        auth_backoff_max_s: Longest back-off (also how long a quiet address is remembered).
        rejection_log_interval_s: A client's rejected requests are logged at most once
            per interval, as a summary.
        staleness_threshold_days: A runner whose last run is older than this is flagged
            ``stale`` (its form features describe an old horse).
        kelly_fraction: Kelly multiplier of the stakes (quarter Kelly by default).
        bankroll_units: Bankroll the stakes are expressed in.
        max_stake_fraction: Cap on one stake's share of the bankroll.
        staking_track: Probability the edge and stakes use: ``combined`` (the default,
            :data:`racecast.inference.scoring.DEFAULT_STAKING_TRACK`: ``p_win_combined``,
            the Benter blend; no market, no bet) or ``fundamental`` (``p_win``). Either
            is staked only if the bundle's validation found it stakeable, else every
            stake is 0 and ``stake_reason`` says why.
        explain_top_k: Features listed in each runner's explanation.
        race_cache_size: Races whose last predictions ``GET /api/v1/races/{id}`` keeps
            (and races whose explanations and fundamental feature rows the service keeps).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle_uri: str
    feature_repo: Path = Path("feature_repo")
    feature_service: str | None = None
    feature_params: dict[str, Any] = Field(default_factory=dict)
    api_keys: tuple[str, ...] = ()
    credentials_path: Path | None = Path("conf/local/credentials.yml")
    allow_anonymous: bool = False
    rate_limit_per_minute: int = Field(10_000, gt=0)
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_json_depth: int = Field(16, ge=2)
    max_races_per_request: int = Field(100, ge=1)
    max_runners_per_race: int = Field(48, ge=1)
    max_string_length: int = Field(2000, ge=1)
    max_object_keys: int = Field(200, ge=1)
    max_error_details: int = Field(50, ge=1)
    plausibility: Plausibility = Field(default_factory=Plausibility)
    auth_free_failures: int = Field(5, ge=0)
    auth_backoff_s: float = Field(1.0, gt=0)
    auth_backoff_max_s: float = Field(900.0, gt=0)
    rejection_log_interval_s: float = Field(60.0, gt=0)
    staleness_threshold_days: float = Field(180.0, gt=0)
    kelly_fraction: float = Field(0.25, gt=0, le=1)
    bankroll_units: float = Field(100.0, gt=0)
    max_stake_fraction: float = Field(0.05, gt=0, le=1)
    staking_track: Literal["fundamental", "combined"] = DEFAULT_STAKING_TRACK
    explain_top_k: int = Field(5, ge=1)
    race_cache_size: int = Field(1024, ge=1)

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> ServingSettings:
        """Validate settings, with an error that names each bad setting.

        Args:
            values: Field name -> value.

        Returns:
            The settings.

        Raises:
            SettingsError: If a name is unknown or a value invalid.
        """
        try:
            return cls(**dict(values))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<settings>'}: {err['msg']}"
                for err in exc.errors()
            )
            raise SettingsError(f"serving settings: {problems}") from exc

    @classmethod
    def environ_overrides(cls, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``RACECAST_<FIELD>`` overrides present in ``environ`` (strings, unvalidated)."""
        environ = os.environ if environ is None else environ
        found = {}
        for name in cls.model_fields:
            key = f"{ENV_PREFIX}{name.upper()}"
            if name not in _NOT_FROM_ENV and environ.get(key, "") != "":
                found[name] = environ[key]
        return found

    @classmethod
    def from_project(
        cls,
        env: str | None = None,
        root: Path | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ServingSettings:
        """Settings of a project env: parameters, then environment variables, then overrides.

        Args:
            env: Kedro env (``local`` by default).
            root: Project root (the current directory by default).
            environ: Environment variables (``os.environ`` by default).
            **overrides: Settings that win over everything (None values are ignored).

        Returns:
            The settings; relative paths are resolved against the project root.

        Raises:
            SettingsError: If a setting is unknown or invalid.
            FileNotFoundError: If ``root`` is not a racecast project.
        """
        from racecast.project import load_parameters, project_root

        base = project_root(root)
        params = load_parameters(env, base)
        features = params.get("features") or {}
        values: dict[str, Any] = {
            "feature_repo": features.get("repo_path", "feature_repo"),
            "feature_params": dict(features.get("compute") or {}),
            "credentials_path": "conf/local/credentials.yml",
        }
        serving = params.get("serving") or {}
        if not isinstance(serving, Mapping):
            raise SettingsError(f"parameters 'serving' must be a mapping, got {type(serving).__name__}")
        values.update(serving)
        values.update(cls.environ_overrides(environ))
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("feature_repo", "credentials_path"):
            if values.get(name) is not None and not Path(values[name]).is_absolute():
                values[name] = base / values[name]
        bundle_uri = values.get("bundle_uri")
        if bundle_uri is not None and not str(bundle_uri).startswith("models:/"):
            if not Path(str(bundle_uri)).is_absolute():
                values["bundle_uri"] = str(base / str(bundle_uri))
        return cls.build(values)
