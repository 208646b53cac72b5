"""Nodes of the evaluation pipeline: every model of the zoo scored on the holdout.

The scored races are the holdout races with a complete market (every runner has final
odds) and a prediction of every model, so that every row of the report, the market
included, is computed on the same races. The metrics are those of
:func:`racecast.evaluation.metrics.evaluate` (single-winner races; dead heats counted).
Tracks: ``market`` (the protocol's plain market probability of ``odds_final``, and
``market_corrected``, the conditional logit of :mod:`racecast.models.market`),
``fundamental`` (base models and the stacker, no odds-derived input), ``combined``
(``blend``: the candidate the decision rule shipped, or ``market_corrected``) and
``candidate`` (``benter`` and ``residual``, each combined-track candidate as fitted).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from racecast.evaluation import plots
from racecast.evaluation.decision import gain_test
from racecast.evaluation.metrics import (
    evaluate,
    kelly_simulation,
    market_probability,
    single_winner_races,
)
from racecast.evaluation.second_stage import per_race_gain
from racecast.features.specs import CARD_ORDER

logger = logging.getLogger(__name__)

MARKET = "market"
STACKED = "stacked"
BLEND = "blend"
#: The serving subset's stacker and combined track (racecast.pipelines.model_zoo.serving).
SERVING_STACKED = "serving_stacked"
SERVING_BLEND = "serving_blend"
MARKET_CORRECTED = "market_corrected"
CANDIDATE_NAMES = ("benter", "residual")
ORACLE_COLUMN = "p_oracle"
FRAME_COLUMNS = ["race_id", "horse_id", "off_time", "odds_final", "won", "position"]


def _track(name: str) -> str:
    if name in (MARKET, MARKET_CORRECTED):
        return "market"
    if name in (BLEND, SERVING_BLEND):
        return "combined"
    if name in CANDIDATE_NAMES:
        return "candidate"
    return "fundamental"


def build_holdout_frame(
    holdout_set: pd.DataFrame,
    oracle_win_probabilities: pd.DataFrame | None = None,
    **holdout_predictions: pd.DataFrame,
) -> pd.DataFrame:
    """One row per holdout runner with ``p_<model>`` for every model and ``p_market``.

    Args:
        holdout_set: Holdout runners (labels and ``odds_final``).
        oracle_win_probabilities: ``race_id, horse_id, p_true`` (synthetic world only);
            re-normalised over the runners as ``p_oracle``.
        **holdout_predictions: ``<model>`` -> holdout prediction frame (``p`` column).

    Returns:
        The frame of the scored races (complete market, oracle when given, and every
        model's prediction), in time order and, within a race, in race-card order
        (``cloth_number`` when the holdout set has it), which breaks probability ties.
    """
    card = [CARD_ORDER] if CARD_ORDER in holdout_set.columns else []
    frame = holdout_set[FRAME_COLUMNS + card].copy()
    frame["p_market"] = market_probability(frame)
    for name, pred in holdout_predictions.items():
        joined = pred[["race_id", "horse_id", "p"]].rename(columns={"p": f"p_{name}"})
        frame = frame.merge(joined, on=["race_id", "horse_id"], how="left", validate="one_to_one")
    if oracle_win_probabilities is not None:
        oracle = oracle_win_probabilities[["race_id", "horse_id", "p_true"]]
        frame = frame.merge(oracle, on=["race_id", "horse_id"], how="left", validate="one_to_one")
        frame[ORACLE_COLUMN] = frame["p_true"] / frame.groupby("race_id")["p_true"].transform("sum")
        frame = frame.drop(columns="p_true")
    prob_cols = [c for c in frame.columns if c.startswith("p_")]
    complete = frame[prob_cols].notna().all(axis=1).groupby(frame["race_id"]).transform("all")
    n_races = frame["race_id"].nunique()
    frame = frame[complete]
    # race-card order inside a race: joint favourites go to the lowest cloth number
    order = ["off_time", "race_id", *card, "horse_id"]
    frame = frame.sort_values(order, kind="mergesort", na_position="last").reset_index(drop=True)
    excluded = n_races - frame["race_id"].nunique()
    if excluded:
        logger.warning(
            "evaluation: %d of %d holdout races left out (incomplete market, oracle or predictions)",
            excluded,
            n_races,
        )
    if frame.empty:
        raise ValueError("no holdout race has a complete market and every model's prediction")
    return frame


def _model_names(frame: pd.DataFrame) -> list[str]:
    """Model names of the ``p_`` columns (market first, oracle left out)."""
    names = [c[2:] for c in frame.columns if c.startswith("p_") and c != ORACLE_COLUMN]
    return [MARKET] + [n for n in names if n != MARKET]


def _clean(value: Any) -> Any:
    """JSON-safe value (NaN and infinities become None, numpy scalars plain Python)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _jsonable(value: Any) -> Any:
    """Nested dicts/lists/arrays with JSON-safe scalars (see :func:`_clean`)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return _clean(value)


def _combined_report(frame: pd.DataFrame, model: Any, decision: dict[str, Any]) -> dict[str, Any]:
    """The combined track: its decision on training races and its holdout gains.

    ``holdout`` holds one-sided gain tests (:func:`~racecast.evaluation.decision.gain_test`,
    at the rule's ``alpha``) of the shipped track and of each candidate over
    ``market_corrected``, and of ``market_corrected`` and the shipped track over the
    plain market: reported, never used to decide.
    """
    alpha = float(decision["alpha"])
    pairs = [
        (f"{name}_vs_{MARKET_CORRECTED}", name, MARKET_CORRECTED)
        for name in (BLEND, *CANDIDATE_NAMES)
    ] + [
        (f"{MARKET_CORRECTED}_vs_{MARKET}", MARKET_CORRECTED, MARKET),
        (f"{BLEND}_vs_{MARKET}", BLEND, MARKET),
    ]
    holdout = {
        key: gain_test(per_race_gain(frame, f"p_{a}", f"p_{b}"), alpha)
        for key, a, b in pairs
        if f"p_{a}" in frame.columns and f"p_{b}" in frame.columns
    }
    market = model.market_
    return _jsonable(
        {
            "choice": model.choice_,
            "rule": decision["rule"],
            "alpha": alpha,
            "training": {k: v for k, v in decision.items() if k not in ("rule", "alpha", "choice")},
            "market_corrected": {"terms": market.describe(), "n_fit_races": market.n_races_},
            "benter": {
                "a_fundamental": model.benter_.coef_[0],
                "b_market_corrected": model.benter_.coef_[1],
                "se": model.benter_.bse_,
                "n_fit_races": model.benter_.n_races_,
            },
            "staking": model.validation_["staking"],
            "holdout": holdout,
        }
    )


def evaluate_models(
    holdout_frame: pd.DataFrame,
    split_info: dict[str, Any],
    blend_model: Any,
    params: dict[str, Any],
    serving_subset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every protocol metric of every model on the scored holdout races.

    Args:
        holdout_frame: Output of :func:`build_holdout_frame`.
        split_info: ``model_zoo.split_info``.
        blend_model: The fitted ``CombinedTrack`` (its terms, coefficients, decision
            and staking validation are reported).
        params: ``evaluation`` parameters (``kelly_fraction``).
        serving_subset: ``model_zoo.serving_subset`` (the zoo models the served stack
            keeps, chosen on the inner split); reported as ``serving`` beside the
            ``serving_stacked`` / ``serving_blend`` holdout figures.

    Returns:
        ``{"split": {...}, "models": {name: {"track": ..., metrics...}}, "combined": {...},
        "serving": {...}}``;
        ``combined`` (see :func:`_combined_report`) holds the decision taken on training
        races and the holdout gains over ``market_corrected``.
    """
    oracle_col = ORACLE_COLUMN if ORACLE_COLUMN in holdout_frame.columns else None
    kelly_fraction = float(params.get("kelly_fraction", 0.25))
    models: dict[str, dict[str, Any]] = {}
    for name in _model_names(holdout_frame):
        metrics = evaluate(
            holdout_frame,
            f"p_{name}",
            market_col="p_market",
            oracle_col=oracle_col,
            combined=name in (BLEND, SERVING_BLEND),
            kelly_fraction=kelly_fraction,
        )
        models[name] = {"track": _track(name), **{k: _clean(v) for k, v in metrics.items()}}
    split = {
        **split_info,
        "n_evaluated_races": int(holdout_frame["race_id"].nunique()),
        "n_excluded_races": int(
            split_info.get("n_holdout_races", 0) - holdout_frame["race_id"].nunique()
        ),
        "oracle": oracle_col is not None,
    }
    report: dict[str, Any] = {"split": split, "models": models}
    if serving_subset is not None:
        report["serving"] = _serving_report(serving_subset, models)
    decision = getattr(blend_model, "decision_", None)
    if decision is not None:
        report["combined"] = _combined_report(holdout_frame, blend_model, decision)
    best = max(
        (n for n, m in models.items() if m["track"] == "fundamental"),
        key=lambda n: models[n]["pseudo_r2"],
        default=None,
    )
    logger.info(
        "evaluation on %d races: market R2 %.4f, best fundamental %s R2 %.4f, blend R2 %s",
        split["n_evaluated_races"],
        models[MARKET]["pseudo_r2"],
        best,
        models[best]["pseudo_r2"] if best else float("nan"),
        models.get(BLEND, {}).get("pseudo_r2"),
    )
    return report


def _serving_report(subset: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """The serving subset beside the full stack's holdout log loss (what serving gives up)."""
    out = {k: subset.get(k) for k in ("models", "dropped", "tolerance", "reason", "inner")}
    for served, full in ((SERVING_STACKED, STACKED), (SERVING_BLEND, BLEND)):
        a = (models.get(served) or {}).get("log_loss")
        b = (models.get(full) or {}).get("log_loss")
        out[f"{served}_minus_{full}_log_loss"] = None if a is None or b is None else a - b
    return _clean_tree(out)


def _clean_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_tree(v) for v in value]
    return _clean(value)


def serving_lines(report: dict[str, Any]) -> list[str]:
    """The serving subset: which models the served stack keeps and what it costs."""
    serving = report.get("serving")
    if not serving:
        return []
    lines = [
        "## Serving bundle",
        "",
        f"The service scores {len(serving['models'])} zoo models: "
        + ", ".join(f"`{n}`" for n in serving["models"])
        + ("." if not serving["dropped"] else f"; left out: {', '.join(serving['dropped'])}."),
    ]
    if serving.get("reason"):
        lines.append(f"Chosen on the inner split of the training races: {serving['reason']}.")
    for served, full in ((SERVING_STACKED, STACKED), (SERVING_BLEND, BLEND)):
        delta = serving.get(f"{served}_minus_{full}_log_loss")
        if delta is not None:
            lines.append(f"- holdout log loss, `{served}` minus `{full}`: {_fmt(delta)}")
    return ["", *lines]


TABLE_COLUMNS = [
    "track",
    "pseudo_r2",
    "delta_r2_vs_market",
    "log_loss",
    "top1",
    "top3",
    "ndcg_at_1",
    "brier",
    "ece",
    "lr_test_p",
    "gap_to_oracle",
    "signal_recovered",
]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def evaluation_table(report: dict[str, Any]) -> str:
    """Markdown table of the report, models sorted by track then pseudo R².

    Args:
        report: Output of :func:`evaluate_models`.

    Returns:
        Markdown text.
    """
    models = report["models"]
    columns = [c for c in TABLE_COLUMNS if any(c in m for m in models.values())]
    order = {"market": 0, "combined": 1, "candidate": 2, "fundamental": 3}
    names = sorted(
        models, key=lambda n: (order[models[n]["track"]], -(models[n]["pseudo_r2"] or 0))
    )
    split = report["split"]
    lines = [
        "# Holdout evaluation",
        "",
        f"Holdout from {split['holdout_start']}: {split['n_evaluated_races']} races scored "
        f"({split['n_excluded_races']} left out), training {split['n_train_races']} races. "
        "Metrics on single-winner races (docs/evaluation-protocol.md).",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [
        f"| {name} | " + " | ".join(_fmt(models[name].get(c)) for c in columns) + " |"
        for name in names
    ]
    if "combined" in report:
        lines += ["", *verdict_lines(report)]
    lines += serving_lines(report)
    return "\n".join(lines) + "\n"


_TRACK_MODEL = {"fundamental": STACKED, "combined": BLEND}


def _test_text(test: dict[str, Any]) -> str:
    return (
        f"{_fmt(test['mean_gain'])} per race (SE {_fmt(test['se'])}, one-sided p "
        f"{_fmt(test['p_value'])}, {test['n_races']} races)"
    )


def verdict_lines(report: dict[str, Any]) -> list[str]:
    """Plain-language answer: does racecast beat the market on this data set, and staking."""
    combined, models = report["combined"], report["models"]
    holdout, training = combined["holdout"], combined["training"]
    choice = combined["choice"]
    lines = ["## Does racecast beat the market here?", ""]
    vs_market = holdout.get(f"{BLEND}_vs_{MARKET}")
    vs_corrected = holdout.get(f"{BLEND}_vs_{MARKET_CORRECTED}")
    if choice == MARKET_CORRECTED:
        lines.append(
            "The decision rule (fixed before the run, on training races only) shipped no "
            "candidate: the combined track is `market_corrected`, a re-weighting of the "
            "market's own prices. racecast has shown no edge over the market on this data set."
        )
    else:
        lines.append(
            f"The decision rule (training races only) shipped `{choice}` as the combined track."
        )
    for name, test in training["tests"].items():
        lines.append(
            f"- training rolling origin, `{name}` over market_corrected: {_test_text(test)}; "
            f"minimum detectable gain {_fmt(test['mde'])} at power {test['power']}, power "
            f"{_fmt(test['power_at_reference'])} against a gain of {_fmt(test['reference_gain'])}"
        )
    if vs_corrected and choice != MARKET_CORRECTED:
        lines.append(f"- holdout, combined over market_corrected: {_test_text(vs_corrected)}")
    if vs_market:
        beats = vs_market["mean_gain"] > 0 and vs_market["p_value"] < combined["alpha"]
        if not beats:
            verdict = "**no significant edge over the market**"
        elif choice == MARKET_CORRECTED:
            verdict = (
                "better than the plain market, but only by re-weighting the market's own "
                "prices (no fundamental information): **no edge from racecast's models**"
            )
        else:
            verdict = "**beats the market**"
        lines.append(
            f"- holdout, combined over the plain market: {_test_text(vs_market)}; pseudo-R² "
            f"{_fmt(models[BLEND]['pseudo_r2'])} vs {_fmt(models[MARKET]['pseudo_r2'])}: " + verdict
        )
    lines += ["", "Staking (decided on training races; holdout figures of stakeable tracks only):"]
    for track, figures in combined["staking"].items():
        model = models.get(_TRACK_MODEL.get(track, ""), {})
        if figures.get("stakeable"):
            lines.append(
                f"- {track}: stakeable (validation ROI {_fmt(figures['roi'])} on "
                f"{figures['n_bets']} bets); holdout flat top-1 ROI "
                f"{_fmt(model.get('roi_flat_top1'))}, Kelly final bankroll "
                f"{_fmt(model.get('kelly_final_bankroll'))}"
            )
        else:
            lines.append(f"- {track}: not stakeable ({figures.get('reason')})")
    terms = combined["market_corrected"]["terms"]
    lines += [
        "",
        "market_corrected terms (fit on every training race): "
        + ", ".join(f"{t} = {_fmt(v['coef'])} (SE {_fmt(v['se'])})" for t, v in terms.items()),
        "",
        f"Benter candidate: a (fundamental) = {_fmt(combined['benter']['a_fundamental'])}, "
        f"b (market_corrected) = {_fmt(combined['benter']['b_market_corrected'])}, fit on "
        f"{combined['benter']['n_fit_races']} out-of-fold training races.",
    ]
    return lines


def mlflow_metrics(report: dict[str, Any], params: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The ``mlflow_metrics`` of every model of the report (zoo models, stacked, blend and
    market), in ``MlflowMetricsHistoryDataset`` format.

    Args:
        report: Output of :func:`evaluate_models`.
        params: ``evaluation`` parameters (``mlflow_metrics``: metric names).

    Returns:
        ``{"<model>.<metric>": {"value": v, "step": 0}}`` for every model and metric;
        missing or non-finite values are left out.
    """
    out: dict[str, dict[str, float]] = {}
    for model, metrics in report["models"].items():
        for metric in params.get("mlflow_metrics", []):
            value = metrics.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"{model}.{metric}"] = {"value": float(value), "step": 0}
    return out


def _plot_models(frame: pd.DataFrame, params: dict[str, Any]) -> list[str]:
    wanted = [MARKET, *params.get("plot_models", [STACKED, BLEND])]
    return [n for n in dict.fromkeys(wanted) if f"p_{n}" in frame.columns]


def plot_reliability(holdout_frame: pd.DataFrame, params: dict[str, Any]) -> Figure:
    """Reliability diagram of the market (dashed reference) and ``plot_models`` on the
    scored single-winner races."""
    single = single_winner_races(holdout_frame)
    names = _plot_models(single, params)
    frame = single.rename(columns={f"p_{n}": n for n in names})
    return plots.reliability_diagram(
        frame,
        names,
        reference=MARKET,
        title=(
            f"Reliability of win probabilities: {', '.join(names)}\n"
            f"{single['race_id'].nunique()} holdout races, {len(single)} runners"
        ),
    )


def plot_kelly(holdout_frame: pd.DataFrame, params: dict[str, Any]) -> Figure:
    """Fractional-Kelly bankroll curves of the market (dashed reference) and ``plot_models``."""
    single = single_winner_races(holdout_frame)
    fraction = float(params.get("kelly_fraction", 0.25))
    curves = {
        name: kelly_simulation(single, f"p_{name}", fraction=fraction).bankroll
        for name in _plot_models(single, params)
    }
    return plots.kelly_curve(
        curves,
        reference=MARKET,
        title=(
            f"Bankroll staking {fraction:g} Kelly at final odds: {', '.join(curves)}\n"
            f"{single['race_id'].nunique()} holdout races"
        ),
    )


def plot_feature_importance(model: Any, params: dict[str, Any], model_name: str) -> Figure:
    """Feature importance of a fitted race model (the LightGBM ranker by default), its
    title naming the model and what the importance measures."""
    return plots.feature_importance(
        model.importance(),
        top_n=params.get("importance_top_n", 30),
        model=model_name,
        kind=getattr(model, "importance_kind", None),
    )
