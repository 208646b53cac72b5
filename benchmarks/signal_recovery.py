"""How much of the synthetic world's signal can fundamental models recover? (in process)

Runs, without Kedro or Feast, the same steps the pipelines run on the synthetic default:

1. simulate the world (``conf/base/parameters/simulation.yml``, overrides with ``--set``);
2. ingest its racecard/results JSON exactly as the ingestion pipeline does
   (``parse_racecards`` then ``validate_and_split``);
3. build the features by the reference path (``entity_frame``, ``build_state_tables``,
   ``point_in_time_join`` with the Feast TTL, ``build_features``; identical to the Feast
   path by test), with the ``features.compute`` parameters;
4. split by the protocol (``holdout_split``, last 20% of races by race day);
5. fit ``ConditionalLogit`` and ``LGBMRankerModel`` (kwargs and ranker relevance from
   ``conf/base/parameters/model_zoo.yml``) on ``FUNDAMENTAL_FEATURES`` of the training
   races and score the holdout.

It prints and writes (``data/08_reporting/signal_recovery.json``):

* per model, and for the market: ``signal_recovered = (LL_uniform - LL_model) /
  (LL_uniform - LL_oracle)`` on the holdout's single-winner races (the protocol
  metric), plus ``expected_signal_recovered``, the same ratio with every log loss
  replaced by its expectation under ``p_true`` (``-sum_i p_true_i log p_i`` per race):
  the quantity the realised ratio estimates, with far less sampling noise;
* the variance decomposition of the linear predictor ``eta``: the within-race variance
  of each component (``SimulatedWorld.components``) and its share of the within-race
  variance of ``eta`` (shares do not add to 1: components covary);
* the wall-clock time of every stage.

Run from the repository root: ``.venv/bin/python benchmarks/signal_recovery.py
[--seed N] [--n-days N] [--set market.noise_sd=0.25 ...] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

logger = logging.getLogger("benchmarks.signal_recovery")

SIMULATION_YML = Path("conf/base/parameters/simulation.yml")
FEATURES_YML = Path("conf/base/parameters/features.yml")
MODEL_ZOO_YML = Path("conf/base/parameters/model_zoo.yml")
DEFAULT_OUTPUT = Path("data/08_reporting/signal_recovery.json")
MODELS = ("conditional_logit", "lgbm_ranker")
INGESTION_PARAMS = {"source": "synthetic", "months": None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="simulation.seed override")
    parser.add_argument("--n-days", type=int, default=None, help="simulation.n_days override")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="simulation parameter override, dotted key, YAML value (repeatable), "
        "e.g. --set market.noise_sd=0.25",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {', '.join(MODELS)}",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON report path")
    parser.add_argument("--verbose", action="store_true", help="show racecast INFO logs")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown model(s) {unknown}; known: {list(MODELS)}")
    return args


def simulation_params(
    overrides: list[str], seed: int | None, n_days: int | None, path: Path = SIMULATION_YML
) -> dict[str, Any]:
    """The ``simulation`` parameters of the base env with the command-line overrides.

    Args:
        overrides: ``KEY=VALUE`` strings; dotted keys reach into mappings
            (``market.noise_sd``), values are parsed as YAML.
        seed: ``simulation.seed`` override.
        n_days: ``simulation.n_days`` override.
        path: The parameters file.

    Returns:
        A new mapping (progress bar off).

    Raises:
        ValueError: If an override is not ``KEY=VALUE``.
    """
    params = copy.deepcopy(yaml.safe_load(path.read_text())["simulation"])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. market.noise_sd=0.25")
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    if seed is not None:
        params["seed"] = seed
    if n_days is not None:
        params["n_days"] = n_days
    params["show_progress"] = False
    return params


def timed(timings: dict[str, float], name: str, func: Callable[[], Any]) -> Any:
    """Run ``func``, store its wall-clock seconds under ``timings[name]``, return its result."""
    start = time.perf_counter()
    result = func()
    timings[name] = round(time.perf_counter() - start, 2)
    logger.info("%s: %.1fs", name, timings[name])
    return result


def ingest(racecard_texts: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse and validate the simulator's JSON partitions as the ingestion pipeline does.

    Args:
        racecard_texts: ``{partition_id: json_text}`` (``YYYY-MM-DD.racecard|results``).

    Returns:
        The primary ``races`` and ``runners`` tables.

    Raises:
        RuntimeError: If anything is quarantined (the simulator must write clean data).
    """
    from racecast.ingestion.racecards import parse_racecards
    from racecast.ingestion.validate import validate_and_split

    loaders = {pid: (lambda text=text: text) for pid, text in racecard_texts.items()}
    parsed = parse_racecards(loaders, INGESTION_PARAMS)
    races, runners, quarantine, _ = validate_and_split(*parsed, INGESTION_PARAMS)
    if len(quarantine):
        raise RuntimeError(
            f"ingestion quarantined {len(quarantine)} records of the synthetic world, e.g. "
            f"{quarantine.head(3).to_dict('records')}"
        )
    return races, runners


def training_set(
    races: pd.DataFrame, runners: pd.DataFrame, compute: dict[str, Any]
) -> pd.DataFrame:
    """Features of every runner of an official race by the reference (non-Feast) path.

    Args:
        races: Primary races.
        runners: Primary runners.
        compute: ``features.compute`` parameters.

    Returns:
        Keys, features, ``odds_final`` and labels; one row per runner.
    """
    from racecast.features.entities import entity_frame
    from racecast.features.specs import LABEL_COLUMNS, STATE_TTL_DAYS
    from racecast.features.state import build_state_tables
    from racecast.features.transform import build_features, point_in_time_join

    context = entity_frame(races, runners)
    labelled = context[context["won"].notna()].reset_index(drop=True)
    tables = build_state_tables(races, runners, compute)
    joined = point_in_time_join(labelled, tables, ttl_days=STATE_TTL_DAYS)
    features = build_features(labelled, joined.drop(columns=labelled.columns), compute)
    return pd.concat([features, labelled[["odds_final", *LABEL_COLUMNS]]], axis=1).reset_index(
        drop=True
    )


def fit_and_predict(
    name: str, spec: dict[str, Any], relevance_top: int | None,
    train: pd.DataFrame, hold: pd.DataFrame,
) -> np.ndarray:  # fmt: skip
    """Fit one zoo model on the training races and return its holdout probabilities.

    Args:
        name: Zoo name (``conditional_logit`` or ``lgbm_ranker``).
        spec: Its ``model_zoo.models`` entry (``kwargs`` used).
        relevance_top: ``model_zoo.cv.relevance_top`` (graded relevance for the ranker).
        train: Training runners.
        hold: Holdout runners.

    Returns:
        Per-race normalised probabilities aligned with ``hold``.
    """
    from racecast.features.specs import FUNDAMENTAL_FEATURES
    from racecast.models.base import relevance_from_position
    from racecast.models.zoo import ConditionalLogit, LGBMRankerModel

    cls = {"conditional_logit": ConditionalLogit, "lgbm_ranker": LGBMRankerModel}[name]
    model = cls(**(spec.get("kwargs") or {}))
    relevance = (
        relevance_from_position(train["position"].astype("float64"), top=relevance_top)
        if relevance_top
        else None
    )
    model.fit(
        train[FUNDAMENTAL_FEATURES],
        train["won"].astype("int64"),
        train["race_id"],
        relevance=relevance,
    )
    return model.predict_proba(hold[FUNDAMENTAL_FEATURES], hold["race_id"])


def expected_log_loss(frame: pd.DataFrame, prob_col: str) -> float:
    """Mean over races of ``-sum_i p_true_i log p_i``: the log loss expected under the oracle."""
    terms = -(frame["p_oracle"] * np.log(frame[prob_col]))
    return float(terms.groupby(frame["race_id"]).sum().mean())


def recovery(frame: pd.DataFrame, prob_col: str) -> dict[str, float]:
    """Protocol metrics plus the expected (oracle-weighted) signal recovered.

    Args:
        frame: Holdout runners of single-winner races with ``p_oracle`` and ``prob_col``.
        prob_col: Per-race normalised probability column.

    Returns:
        ``log_loss``, ``pseudo_r2``, ``signal_recovered``, ``expected_signal_recovered``,
        ``oracle_log_loss``, ``uniform_log_loss``.
    """
    from racecast.evaluation.metrics import evaluate

    metrics = evaluate(frame, prob_col, oracle_col="p_oracle")
    entropy = expected_log_loss(frame, "p_oracle")
    uniform = float(np.log(frame.groupby("race_id").size()).mean())
    expected = (uniform - expected_log_loss(frame, prob_col)) / (uniform - entropy)
    keys = ("log_loss", "pseudo_r2", "signal_recovered", "oracle_log_loss", "uniform_log_loss")
    return {**{k: float(metrics[k]) for k in keys}, "expected_signal_recovered": expected}


def variance_decomposition(components: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Within-race variance of every component of ``eta`` and its share of ``eta``'s.

    Args:
        components: ``SimulatedWorld.components``.

    Returns:
        ``{component: {"var": v, "share": v / var(eta)}}``, ``eta`` first.
    """
    numeric = components.drop(columns=["race_id", "horse_id"])
    centred = numeric - numeric.groupby(components["race_id"]).transform("mean")
    var = (centred**2).mean()
    return {
        name: {"var": round(float(var[name]), 4), "share": round(float(var[name] / var["eta"]), 3)}
        for name in numeric.columns
    }


def eta_correlation(frame: pd.DataFrame, prob_col: str) -> float:
    """Within-race correlation of ``log p`` with the oracle's ``eta`` (holdout)."""
    x = np.log(frame[prob_col])
    x = x - x.groupby(frame["race_id"]).transform("mean")
    e = frame["eta"] - frame["eta"].groupby(frame["race_id"]).transform("mean")
    return float((x * e).sum() / math.sqrt((x**2).sum() * (e**2).sum()))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate, ingest, build features, fit, score; return the report."""
    from racecast.evaluation.metrics import market_probability, single_winner_races
    from racecast.models.split import holdout_split
    from racecast.pipelines.simulation.nodes import racecard_partitions
    from racecast.simulation.config import SimulationConfig
    from racecast.simulation.world import simulate, world_summary

    timings: dict[str, float] = {}
    params = simulation_params(args.overrides, args.seed, args.n_days)
    cfg = SimulationConfig.from_params(params)
    compute = (yaml.safe_load(FEATURES_YML.read_text())["features"].get("compute")) or {}
    zoo = yaml.safe_load(MODEL_ZOO_YML.read_text())["model_zoo"]
    started = time.perf_counter()

    world = timed(timings, "simulate", lambda: simulate(cfg))
    summary = world_summary(world)
    races, runners = timed(timings, "ingest", lambda: ingest(racecard_partitions(world)))
    data = timed(timings, "features", lambda: training_set(races, runners, compute))

    keys = ["race_id", "horse_id"]
    truth = world.components[[*keys, "eta"]].merge(world.oracle, on=keys, validate="one_to_one")
    data = data.merge(truth, on=keys, how="left", validate="one_to_one")
    if data["p_true"].isna().any():
        raise RuntimeError(f"{int(data['p_true'].isna().sum())} runners have no oracle row")
    data["p_oracle"] = data["p_true"] / data.groupby("race_id")["p_true"].transform("sum")
    split = holdout_split(data, float(zoo.get("holdout_fraction", 0.2)))
    order = ["off_time", "race_id", "horse_id"]
    train = data[split.train_mask(data)].sort_values(order).reset_index(drop=True)
    hold = data[split.holdout_mask(data)].sort_values(order).reset_index(drop=True)
    hold["p_market"] = market_probability(hold)

    relevance_top = zoo.get("cv", {}).get("relevance_top")
    for name in args.models.split(","):
        spec = zoo["models"][name]
        hold[f"p_{name}"] = timed(
            timings,
            f"fit_{name}",
            lambda n=name, s=spec: fit_and_predict(n, s, relevance_top, train, hold),
        )
    timings["total"] = round(time.perf_counter() - started, 2)

    scored = single_winner_races(hold)
    models = {}
    for col in ["p_market", *(f"p_{name}" for name in args.models.split(","))]:
        models[col[2:]] = {
            **recovery(scored, col),
            "eta_correlation": eta_correlation(scored, col),
        }
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "simulation": params,
        "world": {
            "races": summary["races"],
            "runners": summary["runners"],
            "favourite_win_rate": round(summary["favourite_win_rate"], 4),
            "mean_overround": round(summary["mean_overround"], 4),
            "non_runner_rate": round(summary["non_runner_rate"], 4),
            "train_races": len(split.train_race_ids),
            "holdout_races": len(split.holdout_race_ids),
            "holdout_single_winner_races": int(scored["race_id"].nunique()),
            "holdout_start": split.holdout_start.date().isoformat(),
        },
        "eta_variance": variance_decomposition(world.components),
        "holdout": models,
        "timings_s": timings,
    }


def show(report: dict[str, Any], console: Console) -> None:
    """Print the report as tables."""
    w = report["world"]
    console.print(
        f"seed {report['simulation']['seed']}, {report['simulation']['n_days']} days: "
        f"{w['races']} races, {w['runners']} runners; holdout {w['holdout_races']} races "
        f"from {w['holdout_start']}; favourite wins {w['favourite_win_rate']:.3f}, "
        f"overround {w['mean_overround']:.3f}"
    )
    table = Table(title="within-race variance of eta's components")
    for col in ("component", "var", "share"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for name, v in report["eta_variance"].items():
        table.add_row(name, f"{v['var']:.4f}", f"{v['share']:.3f}")
    console.print(table)
    table = Table(title="holdout (single-winner races)")
    cols = (
        "signal_recovered",
        "expected_signal_recovered",
        "log_loss",
        "pseudo_r2",
        "eta_correlation",
    )
    table.add_column("model")
    for col in cols:
        table.add_column(col, justify="right")
    for name, m in report["holdout"].items():
        table.add_row(name, *(f"{m[c]:.4f}" for c in cols))
    console.print(table)
    console.print(f"timings (s): {report['timings_s']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, print, write the JSON report."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.verbose:
        logger.setLevel(logging.INFO)
    report = run(args)
    show(report, Console())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
