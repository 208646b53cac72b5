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

__all__ = ["DEFAULT_BUNDLE_URI", "ENV_PREFIX", "ServingSettings", "SettingsError"]

#: The registry's champion: what ``racecast serve`` scores with unless told otherwise.
DEFAULT_BUNDLE_URI = "models:/racecast-win@champion"

#: Prefix of the environment variables that override settings.
ENV_PREFIX = "RACECAST_"

#: Fields that are never read from ``RACECAST_<FIELD>`` variables (``RACECAST_API_KEYS``
#: is comma-separated and read by :mod:`racecast.serving.auth`).
_NOT_FROM_ENV = frozenset({"api_keys", "feature_params"})


class SettingsError(ValueError):
    """Settings that cannot run the service; the message names the setting."""


class ServingSettings(BaseModel):
    """Everything the inference service needs besides the bundle and the feature store.

    Attributes:
        bundle_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a path to
            a bundle pickle (see :func:`racecast.serving.registry.load_bundle`).
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
        staleness_threshold_days: A runner whose last run is older than this is flagged
            ``stale`` (its form features describe an old horse).
        kelly_fraction: Kelly multiplier of the stakes (quarter Kelly by default).
        bankroll_units: Bankroll the stakes are expressed in.
        max_stake_fraction: Cap on one stake's share of the bankroll.
        staking_track: Probability the edge and stakes use: ``fundamental`` (``p_win``)
            or ``combined`` (``p_win_combined``, the Benter blend; fundamental when a race
            has no market).
        explain_top_k: Features listed in each runner's explanation.
        race_cache_size: Races whose last predictions ``GET /api/v1/races/{id}`` keeps.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle_uri: str = DEFAULT_BUNDLE_URI
    feature_repo: Path = Path("feature_repo")
    feature_service: str | None = None
    feature_params: dict[str, Any] = Field(default_factory=dict)
    api_keys: tuple[str, ...] = ()
    credentials_path: Path | None = Path("conf/local/credentials.yml")
    allow_anonymous: bool = False
    rate_limit_per_minute: int = Field(10_000, gt=0)
    max_body_bytes: int = Field(1_000_000, gt=0)
    staleness_threshold_days: float = Field(180.0, gt=0)
    kelly_fraction: float = Field(0.25, gt=0, le=1)
    bankroll_units: float = Field(100.0, gt=0)
    max_stake_fraction: float = Field(0.05, gt=0, le=1)
    staking_track: Literal["fundamental", "combined"] = "fundamental"
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
        bundle_uri = str(values.get("bundle_uri", DEFAULT_BUNDLE_URI))
        if not bundle_uri.startswith("models:/") and not Path(bundle_uri).is_absolute():
            values["bundle_uri"] = str(base / bundle_uri)
        return cls.build(values)
