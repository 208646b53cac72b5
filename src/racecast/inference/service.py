"""The inference service object: racecard text in, scored races out.

:class:`InferenceService` is what ``POST /api/v1/predict`` (:mod:`racecast.serving.app`),
``racecast predict`` and the ``scoring`` pipeline call: it parses a racecard with the
ingestion parser, reads the runners' features from the Feast online store through the
shared ``build_features`` (:func:`racecast.features.online.online_features`), checks them
with the point-in-time guard (:mod:`racecast.inference.guard`) and scores them with an
inference bundle (:func:`racecast.inference.scoring.score_races`). It knows nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.lru import Lru
from racecast.features import store, transform
from racecast.features.kept_races import KeptRaces
from racecast.features.online import RacecardError, online_features, racecard_entity_rows
from racecast.features.online_read import OnlineReader
from racecast.features.specs import VIEWS
from racecast.inference.guard import check_point_in_time
from racecast.inference.problems import field_loc, problem_details
from racecast.inference.scoring import ScoringConfig, runner_positions, score_races
from racecast.inference.settings import ServingSettings
from racecast.signals.models import to_utc

logger = logging.getLogger(__name__)

__all__ = [
    "InferenceService",
    "features_as_of",
    "parse_as_of",
    "RacecardRequestError",
    "parse_racecard",
    "racecard_error_details",
]

_HEALTH_HORSE = "__racecast_health__"
#: Threads of a service computing explanations alongside the predictions.
_EXPLAIN_WORKERS = 2


# ---------------------------------------------------------------------------- errors
class RacecardRequestError(ValueError):
    """A request body that is not a valid racecard; ``details`` are FastAPI-style errors."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(d["msg"] for d in details))
        self.details = details


def racecard_error_details(text: str, source: str = "request") -> list[dict[str, Any]] | None:
    """FastAPI-style error details of a body that is not JSON (None when it parses).

    Args:
        text: The body text.
        source: Name used in messages.

    Returns:
        ``[{"loc": ["body", position], "msg": ..., "type": "json_invalid"}]`` or None.
    """
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return [
            {
                "loc": ["body", exc.pos],
                "msg": f"{source}: JSON decode error: {exc.msg} at line {exc.lineno} column {exc.colno}",
                "type": "json_invalid",
            }
        ]
    except RecursionError:
        return [
            {"loc": ["body"], "msg": f"{source}: JSON nested too deeply", "type": "json_invalid"}
        ]
    return None


def parse_racecard(
    text: str,
    source: str = "request",
    plausibility: Any = None,
    as_of: Any = None,
    max_details: int = 50,
) -> pd.DataFrame:
    """Entity rows of a racecard text, or a :class:`RacecardRequestError` naming the field.

    Args:
        text: Racecard JSON text.
        source: Name used in messages (a file name for the CLI).
        plausibility: Plausible ranges (``ServingSettings.plausibility``; None: defaults).
        as_of: Reference time of the plausible off-time window (None: now).
        max_details: Most problems listed (every problem with its JSON path).

    Returns:
        ``racecard_entity_rows`` output.

    Raises:
        RacecardRequestError: If the text is not JSON or not a valid racecard.
    """
    try:  # a text that is no JSON fails here too: its details are the JSON error's
        return racecard_entity_rows(text, source, plausibility, as_of)
    except RacecardError as exc:
        broken = racecard_error_details(text, source)
        if broken:
            raise RacecardRequestError(broken) from exc
        if exc.problems:
            details = problem_details(text, exc.problems, source, max_details)
            raise RacecardRequestError(details) from exc
        message = str(exc)
        return_msg = message.removeprefix(f"{source}: ")
        raise RacecardRequestError(
            [{"loc": field_loc(message), "msg": return_msg, "type": "racecard_invalid"}]
        ) from exc


def parse_as_of(value: Any) -> pd.Timestamp:
    """An ``as_of`` request value as an aware UTC Timestamp.

    Raises:
        ValueError: If it is not a timestamp with a time zone (the message names ``as_of``).
    """
    return pd.Timestamp(to_utc(value, "as_of"))


def features_as_of(
    feature_store: Any,
    service_name: str,
    entity_rows: pd.DataFrame,
    as_of: Any,
    params: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Feature rows point in time from the offline store, as the training set reads them.

    Each race reads the state known at ``as_of`` or at its off, whichever is earlier
    (Feast's point-in-time join), then the shared ``build_features``: for a race run
    before ``as_of`` these are its training-set rows.

    Args:
        feature_store: An open FeatureStore.
        service_name: FeatureService to read.
        entity_rows: :func:`parse_racecard` output.
        as_of: Aware timestamp (ISO 8601 text, datetime or Timestamp).
        params: ``features.compute`` parameters.

    Returns:
        One row per runner: keys, off_time and every feature.
    """
    cutoff = parse_as_of(as_of)
    off = pd.to_datetime(entity_rows["off_time"], utc=True)
    rows = entity_rows.assign(event_timestamp=off.where(off <= cutoff, cutoff))
    served = store.historical_state(feature_store, rows, service_name)
    return transform.build_features(entity_rows, served, params or {})


def _json_value(value: Any) -> Any:
    """A JSON-safe scalar (NaN/NA -> None, numpy -> Python)."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return value
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------------------- service
class InferenceService:
    """Scores racecards with a bundle and the Feast online store (shared by app and CLI).

    The service owns what it reuses between requests: the online reader of its feature
    service (resolved once), the races' fundamental feature rows while the SQLite online
    store and their racecard fields stay the same (:class:`~racecast.features.kept_races.KeptRaces`:
    a race asked for again with new prices only gets its market features computed), the
    fundamental probabilities of those same rows (``kept_predictions``: the base models
    and the stacker do not run again for them, see :meth:`InferenceBundle.predict`), the
    explanation workers (started on the first request that asks for explanations;
    :meth:`close` stops them) and the explanations per race.

    Args:
        settings: Service settings.
        bundle: An ``InferenceBundle`` (or an object with the same interface).
        feature_store: An open Feast ``FeatureStore``.
    """

    def __init__(self, settings: ServingSettings, bundle: Any, feature_store: Any) -> None:
        self.settings = settings
        self.bundle = bundle
        self.feature_store = feature_store
        self.feature_service = settings.feature_service or bundle.feature_service
        self.scoring = ScoringConfig(
            kelly_fraction=settings.kelly_fraction,
            bankroll_units=settings.bankroll_units,
            max_stake_fraction=settings.max_stake_fraction,
            staleness_threshold_days=settings.staleness_threshold_days,
            staking_track=settings.staking_track,
        )
        # One FeatureStore (one SQLite connection, one registry cache) for every thread.
        self._store_lock = threading.Lock()
        self._reader: OnlineReader | None = None
        self._explain_warned = False
        #: explanations per race, keyed by its runners and fundamental features: a race
        #: asked for again at new prices is explained once (explanations read fundamental
        #: features only)
        self._explained = Lru(settings.race_cache_size)
        #: fundamental probabilities per request's ordered rows (``InferenceBundle.predict``'s
        #: ``kept``; None: the models score every request)
        self.kept_predictions: Lru | None = Lru(settings.race_cache_size)
        #: The races kept between requests (None: nothing kept, every request reads the store).
        self.kept_races: KeptRaces | None = KeptRaces(settings.race_cache_size)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _explainers(self) -> ThreadPoolExecutor:
        """The service's explanation workers, started on first use.

        Explanations (LightGBM TreeSHAP: native code that releases the GIL) are computed
        while the models predict. The pool is stopped by :meth:`close`, or when the
        service is garbage-collected.
        """
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=_EXPLAIN_WORKERS, thread_name_prefix="racecast-explain"
                )
                weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool

    def close(self) -> None:
        """Stop the explanation workers (a later explanation starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def reader(self) -> OnlineReader:
        """The online reader of the service's feature service (made once; hold
        :attr:`store_lock`)."""
        if self._reader is None:
            self._reader = OnlineReader(self.feature_store, self.feature_service)
        return self._reader

    @property
    def store_lock(self) -> threading.Lock:
        """Held while the feature store is used (one FeatureStore for every thread)."""
        return self._store_lock

    def features(self, entity_rows: pd.DataFrame) -> pd.DataFrame:
        """The bundle's input for upcoming races: online features + final odds.

        Raises:
            racecast.inference.guard.LookAheadError: If the online store already holds
                state from at or after a race's off (its result is known).
        """
        with self._store_lock:
            frame = online_features(
                entity_rows,
                self.feature_service,
                params=self.settings.feature_params,
                reader=self.reader(),
                guard=check_point_in_time,
                kept=self.kept_races,
                with_odds=True,
            )
        return self._with_odds(frame, entity_rows)

    def features_as_of(self, entity_rows: pd.DataFrame, as_of: Any) -> pd.DataFrame:
        """The bundle's input point in time from the offline store: what was known at
        ``as_of`` (or at each race's off, when that is earlier), as the training set reads it.

        Args:
            entity_rows: :func:`parse_racecard` output.
            as_of: Aware timestamp (ISO 8601 text, datetime or Timestamp).

        Returns:
            As :meth:`features`.
        """
        with self._store_lock:
            frame = features_as_of(
                self.feature_store,
                self.feature_service,
                entity_rows,
                as_of,
                self.settings.feature_params,
            )
        return self._with_odds(frame, entity_rows)

    @staticmethod
    def _with_odds(frame: pd.DataFrame, entity_rows: pd.DataFrame) -> pd.DataFrame:
        if "odds_final" not in frame.columns and "odds_final" in entity_rows.columns:
            # the racecard's final odds of each feature row (a one-to-one lookup by runner)
            keys = list(zip(frame["race_id"].tolist(), frame["horse_id"].tolist(), strict=True))
            at = runner_positions(entity_rows, keys, "racecard")
            odds = entity_rows["odds_final"].to_numpy()
            # the frame is build_features' new output, ours to extend (assign would copy it)
            frame["odds_final"] = np.where(at >= 0, odds[np.maximum(at, 0)], np.nan)
        return frame

    def _race_keys(self, features: pd.DataFrame) -> dict[str, tuple[str, bytes]]:
        """Explanation cache key per race: its runners and fundamental feature values."""
        columns = [c for c in getattr(self.bundle, "fundamental_features", []) if c in features]
        values = features[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        horses = features["horse_id"].astype(str).to_numpy()
        races = features["race_id"].astype(str).to_numpy()
        keys = {}
        for race_id in dict.fromkeys(races.tolist()):
            rows = races == race_id
            digest = hashlib.blake2b(values[rows].tobytes(), digest_size=16)
            digest.update("\x1f".join(horses[rows].tolist()).encode())
            keys[race_id] = (race_id, digest.digest())
        return keys

    def _explain(self, features: pd.DataFrame) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Explanations of every runner, each race explained once (``_explained``)."""
        keys = self._race_keys(features)
        found = {race_id: self._explained.get(key) for race_id, key in keys.items()}
        missing = [race_id for race_id, value in found.items() if value is None]
        if missing:
            rows = features[features["race_id"].astype(str).isin(missing)]
            try:
                fresh = self.bundle.explain(rows, top_k=self.settings.explain_top_k)
            except ValueError as exc:  # a bundle without a LightGBM ranker cannot explain
                if not self._explain_warned:
                    logger.warning("explanations unavailable: %s", exc)
                    self._explain_warned = True
                return {}
            for race_id in missing:
                found[race_id] = {k: v for k, v in fresh.items() if k[0] == race_id}
                self._explained.put(keys[race_id], found[race_id])
        return {k: v for per_race in found.values() for k, v in per_race.items()}

    def score_rows(
        self, entity_rows: pd.DataFrame, as_of: Any = None, explain: bool = False
    ) -> dict[str, Any]:
        """Score parsed racecard rows.

        Args:
            entity_rows: :func:`parse_racecard` output.
            as_of: None: upcoming races, features from the online store (refused by the
                point-in-time guard when a race's result is already known); else
                point in time from the offline store (:meth:`features_as_of`).
            explain: Add each runner's explanation (else ``explanation`` is None).

        Returns:
            ``{"model_version", "feature_service", "races": [...]}`` (see
            :func:`racecast.inference.scoring.score_races`).
        """
        if as_of is None:
            features = self.features(entity_rows)
        else:
            features = self.features_as_of(entity_rows, as_of)
        return self.score_features(entity_rows, features, explain)

    def score_features(
        self, entity_rows: pd.DataFrame, features: pd.DataFrame, explain: bool = False
    ) -> dict[str, Any]:
        """Score runners whose feature rows are already read (:meth:`features`).

        Args:
            entity_rows: :func:`parse_racecard` output.
            features: :meth:`features` of those rows.
            explain: Add each runner's explanation, computed on a worker thread while
                the models predict (a race asked for again is explained once).

        Returns:
            As :meth:`score_rows`.
        """
        explained = self._explainers().submit(self._explain, features) if explain else None
        predictions = self.bundle.predict(features, kept=self.kept_predictions)
        explanations = None if explained is None else explained.result()
        races = score_races(
            predictions,
            entity_rows,
            features,
            explanations,
            model_version=str(self.bundle.model_version),
            config=self.scoring,
            staking_validation=getattr(self.bundle, "staking_validation", None),
        )
        return {
            "model_version": str(self.bundle.model_version),
            "feature_service": self.feature_service,
            "races": races,
        }

    def score_text(
        self, text: str, source: str = "request", as_of: Any = None, explain: bool = False
    ) -> dict[str, Any]:
        """Parse and score a racecard text (:func:`parse_racecard` then :meth:`score_rows`)."""
        rows = parse_racecard(
            text,
            source,
            self.settings.plausibility,
            as_of,
            self.settings.max_error_details,
        )
        return self.score_rows(rows, as_of=as_of, explain=explain)

    def horse_state(self, horse_id: str) -> dict[str, Any] | None:
        """The horse's current ``horse_form`` features from the online store.

        Args:
            horse_id: Horse entity key.

        Returns:
            ``{"horse_id", "last_run", "features": {...}}``, None when the online store
            has no state for the horse.
        """
        names = list(VIEWS["horse_form"].features)
        with self._store_lock:
            response = self.feature_store.get_online_features(
                features=[f"horse_form:{n}" for n in names], entity_rows=[{"horse_id": horse_id}]
            ).to_dict()
        values = {n: _json_value((response.get(n) or [None])[0]) for n in names}
        if all(v is None for v in values.values()):
            return None
        last = values.get("h_last_off_ts")
        return {
            "horse_id": horse_id,
            "last_run": None
            if last is None
            else pd.Timestamp(last, unit="s", tz="UTC").isoformat(),
            "features": values,
        }

    def store_reachable(self) -> bool:
        """True when the online store answers a lookup."""
        try:
            with self._store_lock:
                self.feature_store.get_online_features(
                    features=["horse_form:h_runs"], entity_rows=[{"horse_id": _HEALTH_HORSE}]
                ).to_dict()
        except Exception:  # any failure means not ready; the reason goes to the log
            logger.exception("health: online store lookup failed")
            return False
        return True
