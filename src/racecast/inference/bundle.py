"""The inference bundle: every fitted piece needed to score a racecard, in one picklable object.

An :class:`InferenceBundle` holds the base models of the zoo, the stacked meta-learner and
the combined track (market_corrected and its candidates) exactly as the ``model_zoo`` pipeline fitted them, plus the name of the
Feast feature service whose rows it scores. :meth:`InferenceBundle.predict` runs the
same steps as the pipeline's holdout prediction (base models, stacker, blend; its own
code, checked against the ``model_zoo`` nodes' holdout predictions by
``tests/inference/test_bundle.py``), so a runner scored online gets the probability the
evaluation measured.

Input: the frame :func:`racecast.features.transform.build_features` returns (keys and
``off_time``, fundamental and market features), optionally with ``odds_final`` (decimal
odds including the stake; NaN or absent before the market forms).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.frames import float64_matrix, frame_from_arrays
from racecast.data.lru import Lru
from racecast.evaluation.second_stage import CombinedTrack
from racecast.features.market import market_probabilities
from racecast.features.specs import FUNDAMENTAL_FEATURES, ODDS_CAPPED
from racecast.inference.lean import SKIP_MAX_WEIGHT, skipped_models, stacker_weights
from racecast.inference.rows import OUTPUT_COLUMNS, RUNNER_KEYS, Columns, TimeOrdered
from racecast.models.base import RaceModel
from racecast.models.fastpath import BoosterContributions
from racecast.models.trees import LGBMRankerModel

logger = logging.getLogger(__name__)

__all__ = [
    "EXPLAIN_MODEL",
    "InferenceBundle",
    "OUTPUT_COLUMNS",
    "build_bundle",
]

#: Base model whose LightGBM contributions explain a prediction (any LightGBM ranker of
#: the bundle when this one is absent).
EXPLAIN_MODEL = "lgbm_ranker"


#: Column of :meth:`InferenceBundle.contributions` holding the ranker's expected score.
BIAS_COLUMN = "bias"


def _fitted_columns(model: Any, what: str) -> list[str]:
    """``feature_names_in_`` of a fitted model, as strings."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise ValueError(f"{what} is not fitted (it has no feature_names_in_)")
    return [str(c) for c in names]


def _check_parts(
    base_models: Mapping[str, RaceModel],
    stacker: RaceModel,
    blend: CombinedTrack,
    fundamental_features: list[str],
    skipped: Mapping[str, Any] | None = None,
) -> None:
    """Raise if the parts do not fit together the way the model_zoo pipeline built them."""
    if not base_models:
        raise ValueError("base_models is empty: the bundle needs the zoo's fitted base models")
    allowed = set(fundamental_features)
    for name, model in base_models.items():
        if not isinstance(model, RaceModel):
            raise TypeError(
                f"base_models[{name!r}] must be a RaceModel, got {type(model).__name__}"
            )
        outside = [c for c in _fitted_columns(model, f"base_models[{name!r}]") if c not in allowed]
        if outside:
            raise ValueError(
                f"base_models[{name!r}] uses columns {outside[:10]} that are not fundamental "
                "features"
            )
    if not isinstance(stacker, RaceModel):
        raise TypeError(f"stacker must be a RaceModel, got {type(stacker).__name__}")
    stacker_columns = _fitted_columns(stacker, "stacker")
    expected = {f"p_{name}" for name in [*base_models, *(skipped or {})]}
    stacked = {c for c in stacker_columns if c.startswith("p_")}
    if stacked != expected:
        raise ValueError(
            f"stacker was fitted on base columns {sorted(stacked)} but base_models give "
            f"{sorted(expected)}: the bundle needs exactly the stacker's base models"
        )
    extra = [c for c in stacker_columns if not c.startswith("p_") and c not in allowed]
    if extra:
        raise ValueError(f"stacker uses columns {extra} that are not fundamental features")
    if not isinstance(blend, CombinedTrack) or not hasattr(blend, "choice_"):
        raise TypeError(f"blend must be a fitted CombinedTrack, got {type(blend).__name__}")
    outside = [c for c in blend.residual_.feature_names_in_ if c not in allowed]
    if outside:
        raise ValueError(
            f"the residual booster uses columns {outside[:10]} that are not fundamental features"
        )


class InferenceBundle:
    """Fitted base models, stacker and blend of one training run, ready to score runners.

    Build it with :func:`build_bundle`; it pickles as a whole (the registry stores it as
    one artifact).

    Attributes:
        feature_service: Feast feature service whose rows the bundle scores
            (e.g. ``combined_v1``).
        fundamental_features: Feature columns the fundamental track may use.
        base_models: Zoo name -> fitted base :class:`~racecast.models.base.RaceModel`.
        stacker: The fitted stacked meta-learner (inputs ``p_<model>`` + top features).
        blend: The fitted combined track
            (:class:`~racecast.evaluation.second_stage.CombinedTrack`).
        model_version: Build fingerprint, or ``<registered name>/<version>`` once loaded
            from the MLflow registry.
        fingerprint: SHA-256 prefix of the pickled models (identifies the fitted pieces).
        trained_until: ``off_time`` of the last training race.
        holdout_metrics: Holdout metrics of the evaluation report (``stacked``,
            ``blend``, ``market``).
        staking_validation: Track (``fundamental``, ``combined``) -> its staking rule's
            figures on the validation races and whether it may be staked
            (:func:`racecast.evaluation.stakeability.staking_validation`); stakes of a
            track that is not stakeable are 0. Never the holdout.
        stacker_weights: :func:`~racecast.inference.lean.stacker_weights` of the stacker (every zoo model).
        skipped_models: Zoo models left out of the bundle (name -> their weights): the
            stacker's input of a skipped model is a uniform probability per race, which
            changes nothing when the model is ``unused`` (see :func:`build_bundle`).
        serving_subset: The serving subset the stacker and blend were refitted on
            (``model_zoo.serving_subset``: the kept and dropped zoo models, the
            tolerance, the inner-split figures and the reason); empty when the bundle
            holds the full zoo's stack. Its stacker and blend are the subset's own, so
            the served probabilities equal the subset's evaluated ones.
        explain_model: The zoo's LightGBM ranker when the serving subset left it out: it
            explains predictions (:meth:`explain`) and predicts nothing.
    """

    def __init__(
        self,
        feature_service: str,
        fundamental_features: list[str],
        base_models: Mapping[str, RaceModel],
        stacker: RaceModel,
        blend: CombinedTrack,
        model_version: str,
        trained_until: pd.Timestamp,
        holdout_metrics: Mapping[str, Any],
        fingerprint: str = "",
        staking_validation: Mapping[str, Mapping[str, Any]] | None = None,
        stacker_weights: Mapping[str, Mapping[str, Any]] | None = None,
        skipped_models: Mapping[str, Mapping[str, Any]] | None = None,
        serving_subset: Mapping[str, Any] | None = None,
        explain_model: RaceModel | None = None,
    ) -> None:
        if not feature_service:
            raise ValueError("feature_service must name a Feast feature service")
        fundamental = [str(c) for c in fundamental_features]
        _check_parts(base_models, stacker, blend, fundamental, skipped_models)
        self.feature_service = str(feature_service)
        self.fundamental_features = fundamental
        self.base_models = dict(base_models)
        self.stacker = stacker
        self.blend = blend
        self.model_version = str(model_version)
        self.fingerprint = str(fingerprint)
        self.trained_until = pd.Timestamp(trained_until)
        self.holdout_metrics = dict(holdout_metrics)
        self.staking_validation = {
            str(track): dict(figures) for track, figures in (staking_validation or {}).items()
        }
        self.stacker_weights = {str(k): dict(v) for k, v in (stacker_weights or {}).items()}
        self.skipped_models = {str(k): dict(v) for k, v in (skipped_models or {}).items()}
        self.serving_subset = dict(serving_subset or {})
        self.explain_model = explain_model
        self._explainer_lock = threading.Lock()
        self._contributions: tuple[Any, BoosterContributions] | None = None
        self._columns = Columns(self.fundamental_features)

    @property
    def exact(self) -> bool:
        """Whether the bundle predicts what the evaluated stacker does (every skipped
        model unused by the stacker)."""
        return all(w.get("unused", False) for w in getattr(self, "skipped_models", {}).values())

    def __getstate__(self) -> dict[str, Any]:
        """The pickled bundle: its fitted pieces, not what it built to serve them."""
        state = dict(self.__dict__)
        state.pop("_explainer_lock", None)
        state.pop("_contributions", None)
        state.pop("_columns", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("stacker_weights", {})  # bundles pickled before the lean bundle
        state.setdefault("skipped_models", {})
        state.setdefault("serving_subset", {})  # bundles pickled before the serving subset
        state.setdefault("explain_model", None)
        self.__dict__.update(state)
        self._explainer_lock = threading.Lock()
        self._contributions = None
        self._columns = Columns(self.fundamental_features)

    def __repr__(self) -> str:
        return (
            f"InferenceBundle(version={self.model_version!r}, service={self.feature_service!r}, "
            f"base_models={sorted(self.base_models)}, trained_until={self.trained_until})"
        )

    # ------------------------------------------------------------------ predictions
    def predict(self, features: pd.DataFrame, kept: Lru | None = None) -> pd.DataFrame:
        """Win probabilities of every runner.

        The model_zoo pipeline's holdout steps (:func:`predict_holdout` of each base
        model, :func:`predict_stacked_holdout`, :func:`predict_blend_holdout`) on numpy
        arrays: the rows are put in those helpers' time order once, every model scores
        the same float64 matrix through
        :meth:`~racecast.models.base.RaceModel.predict_proba_array` (the code of
        ``predict_proba``) and each output is normalised per race as the helpers do.
        ``tests/inference/test_bundle.py`` checks the result against the helpers.

        Args:
            features: ``build_features`` rows (``race_id``, ``horse_id``, every
                fundamental feature; ``off_time`` optional) and optionally
                ``odds_final``. One row per runner; a race is the set of rows sharing a
                ``race_id``.
            kept: The caller's fundamental probabilities of earlier requests (None:
                none kept). ``p_fundamental`` is a pure function of the bundle, the
                rows' race grouping and their fundamental features, in time order; a
                request whose grouping and features equal a kept one's byte for byte
                (the same races at new prices) takes its ``p_fundamental`` from there
                and only the market and the combined track are computed. The caller
                keeps one ``kept`` per bundle.

        Returns:
            One row per input row, in input order: ``race_id``, ``horse_id``,
            ``p_fundamental`` (stacked meta-learner, sums to 1 per race), ``p_market``
            (normalised ``1/odds_final``; NaN for every runner of a race where any runner
            lacks odds) and ``p_combined`` (the combined track: the candidate the decision
            rule shipped, or ``market_corrected``; NaN without a market).

        Raises:
            KeyError: If a key or feature column is missing.
            ValueError: If a runner appears twice, a feature is not numeric or odds are
                below 1.
        """
        values, odds, keys = self._inputs(features)
        rows = TimeOrdered.of(features, values, self._columns, keys)
        if kept is None:
            p_fund = self._fundamental(rows)
        else:
            key = rows.digest()
            p_fund = kept.get(key)
            if p_fund is None:
                p_fund = self._fundamental(rows)
                p_fund.setflags(write=False)
                kept.put(key, p_fund)
        # race codes in input order (market sums add a race's runners in input order)
        p_market, _ = market_probabilities(
            odds, rows.to_input_order(rows.codes), rows.layout.n_groups
        )
        p_comb = self._blend(p_fund, p_market[rows.order], _capped(features)[rows.order], rows)
        columns = {
            "race_id": features["race_id"].array.copy(),
            "horse_id": features["horse_id"].array.copy(),
            "p_fundamental": rows.to_input_order(p_fund),
            "p_market": p_market,
            "p_combined": np.where(np.isnan(p_market), np.nan, rows.to_input_order(p_comb)),
        }
        # every column is a new array: the frame holds them as they are, one block each
        return frame_from_arrays(
            self._columns.output, [columns[name] for name in OUTPUT_COLUMNS], features.index
        )

    def _fundamental(self, rows: TimeOrdered) -> np.ndarray:
        """``p_fundamental`` of the ordered rows: every base model, then the stacker."""
        base = {
            f"p_{name}": rows.normalised(
                model.predict_proba_array(rows.columns(model), rows.layout)
            )
            for name, model in self.base_models.items()
        }
        if self.skipped_models:  # the stacker's input of a model left out: uniform per race
            uniform = rows.normalised(np.ones(len(rows.order)))
            base.update({f"p_{name}": uniform for name in self.skipped_models})
        stacked_input = self._columns.stacked(self.stacker, base, rows.values)
        return rows.normalised(self.stacker.predict_proba_array(stacked_input, rows.layout))

    def _blend(
        self, p_fund: np.ndarray, p_market: np.ndarray, capped: np.ndarray, rows: TimeOrdered
    ) -> np.ndarray:
        """:func:`predict_blend_holdout`: the combined track where the race has a market, else ``p_fund``."""
        combined = p_fund.copy()
        has_market = ~np.isnan(p_market)
        if has_market.any():
            residual = self.blend.residual_
            combined[has_market] = self.blend.predict_combined(
                p_fund[has_market],
                p_market[has_market],
                capped[has_market],
                None
                if residual is None or self.blend.choice_ != "residual"
                else rows.columns(residual)[has_market],
                rows.race_ids[has_market],
            )
        return combined

    def explainer(self) -> tuple[str, LGBMRankerModel]:
        """The base model whose contributions explain predictions.

        Returns:
            ``(name, model)``: :data:`EXPLAIN_MODEL` when it is a LightGBM ranker (of
            ``base_models``, else ``explain_model``), else the first LightGBM ranker of
            ``base_models``.

        Raises:
            ValueError: If the bundle has no LightGBM ranker.
        """
        candidates = [(EXPLAIN_MODEL, self.base_models.get(EXPLAIN_MODEL))]
        candidates += [(EXPLAIN_MODEL, getattr(self, "explain_model", None))]
        candidates += sorted(self.base_models.items())
        for name, model in candidates:
            if isinstance(model, LGBMRankerModel):
                return name, model
        raise ValueError(
            "explanations need a LightGBM ranker (LGBMRankerModel) among the base models; "
            f"this bundle has {sorted(self.base_models)}"
        )

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions of the LightGBM ranker (SHAP values, ``pred_contrib``).

        The ranker sees the raw features (LightGBM routes missing values itself, there is
        no imputation) in its ``feature_names_in_`` order, so each row's contributions
        plus :data:`BIAS_COLUMN` equal the ranker's raw score
        (:meth:`~racecast.models.base.RaceModel.decision_function`).

        Args:
            features: As for :meth:`predict`.

        Returns:
            One row per input row, in input order: ``race_id``, ``horse_id``, one column
            per ranker feature and ``bias``; in raw-score (utility) units.
        """
        columns, _, contrib = self._ranker_contributions(features)
        out = pd.DataFrame(contrib[:, :-1], columns=columns, index=features.index)
        out.insert(0, "horse_id", features["horse_id"].to_numpy())
        out.insert(0, "race_id", features["race_id"].to_numpy())
        out[BIAS_COLUMN] = contrib[:, -1]
        return out

    def explain(
        self, features: pd.DataFrame, top_k: int = 5
    ) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The ``top_k`` features that move each runner's ranker score the most.

        Args:
            features: As for :meth:`predict`.
            top_k: Entries per runner (at most the ranker's number of features).

        Returns:
            ``(race_id, horse_id)`` -> entries sorted by decreasing absolute
            contribution, each ``{"feature", "value", "contribution"}`` (``value`` is the
            input value, ``None`` when missing; ``contribution`` in raw-score units,
            see :meth:`contributions`).

        Raises:
            ValueError: If ``top_k`` is not a positive integer.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        columns, values, contrib = self._ranker_contributions(features)
        matrix = contrib[:, :-1]
        k = min(int(top_k), len(columns))
        order = np.argsort(-np.abs(matrix), axis=1, kind="stable")[:, :k]
        keys = zip(features["race_id"].astype(str), features["horse_id"].astype(str), strict=True)
        result: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row, key in enumerate(keys):
            result[key] = [
                {
                    "feature": columns[j],
                    "value": None if np.isnan(values[row, j]) else float(values[row, j]),
                    "contribution": float(matrix[row, j]),
                }
                for j in order[row]
            ]
        return result

    def _ranker_contributions(
        self, features: pd.DataFrame
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ranker columns, their values, ``pred_contrib`` matrix with the bias last)."""
        _, ranker = self.explainer()
        self._check_input(features)
        columns = _fitted_columns(ranker, "the explaining ranker")
        values = _numeric_matrix(features, columns)
        contrib = self._contributions_of(ranker)(values)
        return columns, values, contrib

    def _contributions_of(self, ranker: LGBMRankerModel) -> BoosterContributions:
        """The ranker's private ``pred_contrib`` Booster, built on first use and kept."""
        with self._explainer_lock:
            kept = self._contributions
            if kept is None or kept[0] is not ranker.booster_model_:
                kept = self._contributions = (
                    ranker.booster_model_,
                    BoosterContributions(ranker.booster_model_),
                )
            return kept[1]

    # ------------------------------------------------------------------ internals
    def _input_arrays(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Validated fundamental feature matrix and ``odds_final`` (NaN when absent), input order."""
        return self._inputs(features)[:2]

    def _inputs(
        self, features: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """:meth:`_input_arrays` and the race and horse ids (object arrays), input order."""
        keys = self._check_input(features)
        values = _numeric_matrix(features, self._columns.index)
        if "odds_final" not in features.columns:
            return values, np.full(len(features), np.nan), keys
        odds = features["odds_final"]
        if pd.api.types.is_numeric_dtype(odds.dtype):
            return values, odds.to_numpy(dtype=np.float64, na_value=np.nan), keys
        return values, _numeric_matrix(features, ["odds_final"])[:, 0], keys

    def _check_input(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raise unless ``features`` has rows, every needed column and unique runners;
        returns the race and horse ids (object arrays)."""
        if not isinstance(features, pd.DataFrame):
            raise TypeError(f"features must be a pandas DataFrame, got {type(features).__name__}")
        if features.empty:
            raise ValueError("features has no rows")
        if features.columns.is_unique:  # one hash lookup of the ~100 names, not one each
            found = features.columns.get_indexer(self._columns.required)
            missing = [] if (found >= 0).all() else list(self._columns.required[found < 0])
        else:
            missing = [c for c in self._columns.required if c not in features.columns]
        if missing:
            raise KeyError(
                f"features lack columns {missing[:10]} (expected the output of "
                "racecast.features.transform.build_features)"
            )
        return _check_runner_keys(features)


def _capped(features: pd.DataFrame) -> np.ndarray:
    """``odds_capped`` as 0/1 per row (0 when the column is absent or null)."""
    if ODDS_CAPPED not in features.columns:
        return np.zeros(len(features))
    return features[ODDS_CAPPED].astype("boolean").fillna(False).to_numpy(dtype=float)


def _numeric_matrix(frame: pd.DataFrame, columns: list[str] | pd.Index) -> np.ndarray:
    """``frame[columns]`` as float64 (NaN missing); text columns of numbers are converted.

    Raises:
        ValueError: If a column holds values that are not numbers.
    """
    direct = float64_matrix(frame, columns)  # every column float64: no frame[columns]
    if direct is not None:
        return direct
    selected = frame[columns]
    # select_dtypes is the cheap screen (~30 us, the dtypes Series costs ~150 us); it also
    # lists bool and nullable columns, which is_numeric_dtype then accepts
    screened = selected.select_dtypes(exclude="number").columns
    text = [c for c in screened if not pd.api.types.is_numeric_dtype(selected[c].dtype)]
    if text:
        selected = selected.copy()
        for column in text:
            try:
                selected[column] = pd.to_numeric(selected[column], errors="raise")
            except (TypeError, ValueError) as error:
                raise ValueError(f"features: column {column!r} is not numeric ({error})") from error
    return selected.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_runner_keys(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Raise if a runner key is missing or a runner appears twice; returns the race and
    horse ids (object arrays)."""
    race_ids = features["race_id"].to_numpy(dtype=object)
    horse_ids = features["horse_id"].to_numpy(dtype=object)
    if pd.isna(race_ids).any() or pd.isna(horse_ids).any():
        raise ValueError("features: race_id and horse_id must not be missing")
    if len(set(zip(race_ids, horse_ids, strict=True))) == len(features):
        return race_ids, horse_ids
    duplicated = features.duplicated(RUNNER_KEYS)
    first = features.loc[duplicated, RUNNER_KEYS].iloc[0].tolist()
    raise ValueError(
        f"features: runner {first} appears more than once ({int(duplicated.sum())} duplicated rows)"
    )


def bundle_fingerprint(
    base_models: Mapping[str, RaceModel], stacker: RaceModel, blend: CombinedTrack
) -> str:
    """Short SHA-256 of the pickled models (same fitted pieces, same fingerprint).

    Args:
        base_models: Zoo name -> fitted base model.
        stacker: The fitted meta-learner.
        blend: The fitted blend.

    Returns:
        The first 12 hex digits of the digest.
    """
    digest = hashlib.sha256()
    for name in sorted(base_models):
        digest.update(name.encode())
        digest.update(pickle.dumps(base_models[name], protocol=pickle.HIGHEST_PROTOCOL))
    digest.update(pickle.dumps(stacker, protocol=pickle.HIGHEST_PROTOCOL))
    digest.update(pickle.dumps(blend, protocol=pickle.HIGHEST_PROTOCOL))
    return digest.hexdigest()[:12]


def build_bundle(
    base_models: Mapping[str, RaceModel],
    stacker: RaceModel,
    blend: CombinedTrack,
    *,
    feature_service: str,
    trained_until: pd.Timestamp | str,
    holdout_metrics: Mapping[str, Any] | None = None,
    fundamental_features: list[str] | None = None,
    model_version: str | None = None,
    staking_validation: Mapping[str, Mapping[str, Any]] | None = None,
    skip_max_weight: float = SKIP_MAX_WEIGHT,
    serving_subset: Mapping[str, Any] | None = None,
    explain_model: RaceModel | None = None,
) -> InferenceBundle:
    """Assemble an :class:`InferenceBundle` from the model_zoo pipeline's outputs.

    Base models whose :func:`~racecast.inference.lean.stacker_weights` ``weight`` is at most ``skip_max_weight``
    are left out of the bundle (they are not scored when serving). With the default 0
    only models the stacker does not use at all are left out, and the served
    probabilities equal the evaluated stacker's exactly; a larger value also leaves out
    models with a small weight, and the bundle is then not ``exact`` (its predictions
    differ from the evaluated ones; the registry description says so).

    Args:
        base_models: Zoo name -> fitted base model (``model_zoo.<name>.model``); exactly
            the models the stacker was fitted on.
        stacker: ``model_zoo.stacked.model``.
        blend: ``model_zoo.blend.model``.
        feature_service: Feast feature service the bundle scores (``combined_v1``).
        trained_until: ``off_time`` of the last training race.
        holdout_metrics: Holdout metrics per model name (from the evaluation report).
        fundamental_features: Fundamental feature columns (default
            :data:`racecast.features.specs.FUNDAMENTAL_FEATURES`).
        model_version: Version label (default: the models' fingerprint).
        staking_validation: Track -> staking validation figures (default: the blend's
            ``validation_["staking"]``, from
            :func:`~racecast.evaluation.second_stage.rolling_second_stage`;
            none there: no track is stakeable).
        skip_max_weight: Largest stacker weight of a model left out (>= 0; default
            :data:`~racecast.inference.lean.SKIP_MAX_WEIGHT`).
        serving_subset: ``model_zoo.serving_subset`` when ``stacker`` and ``blend`` are
            the serving subset's (``base_models`` then holds the subset's models, as the
            ``model_zoo`` pipeline's ``select_serving_subset`` node chose them); recorded
            in the bundle.
        explain_model: The zoo's :data:`EXPLAIN_MODEL` when ``base_models`` lacks it
            (kept for explanations only).

    Returns:
        The bundle.

    Raises:
        ValueError, TypeError: If the parts do not fit together (see the messages).
    """
    fundamental = list(
        FUNDAMENTAL_FEATURES if fundamental_features is None else fundamental_features
    )
    _check_parts(base_models, stacker, blend, fundamental)
    weights = stacker_weights(stacker)
    skipped = skipped_models(weights, skip_max_weight)
    if len(skipped) == len(base_models):
        raise ValueError(f"skip_max_weight={skip_max_weight} would leave out every base model")
    served = {name: model for name, model in base_models.items() if name not in skipped}
    if skipped:
        logger.info("bundle leaves out %s (stacker weight <= %s)", sorted(skipped), skip_max_weight)
    if not all(w["unused"] for w in skipped.values()):
        logger.warning(
            "bundle leaves out models the stacker uses (%s): its probabilities differ from "
            "the evaluated stacker's",
            sorted(n for n, w in skipped.items() if not w["unused"]),
        )
    fingerprint = bundle_fingerprint(served, stacker, blend)
    bundle = InferenceBundle(
        feature_service=feature_service,
        fundamental_features=fundamental,
        base_models=served,
        stacker=stacker,
        blend=blend,
        model_version=model_version or fingerprint,
        trained_until=pd.Timestamp(trained_until),
        holdout_metrics=dict(holdout_metrics or {}),
        fingerprint=fingerprint,
        staking_validation=(
            (getattr(blend, "validation_", None) or {}).get("staking")
            if staking_validation is None
            else staking_validation
        ),
        stacker_weights=weights,
        skipped_models=skipped,
        serving_subset=serving_subset,
        explain_model=None if EXPLAIN_MODEL in served else explain_model,
    )
    logger.info("built %r", bundle)
    return bundle
