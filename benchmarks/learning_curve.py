"""Is the fundamental model short of data or short of information? (training period only)

Reads a training set written by the pipeline (``data/05_model_input/training_set.parquet``
after ``make run`` or ``kedro run --env hkjc``) and never looks at model predictions
on the protocol holdout:

1. the protocol split (``split_training_set``, ``model_zoo.holdout_fraction``) keeps the
   training races only;
2. an inner split inside them: the last ``--inner-fraction`` of the training races, cut
   at a whole race day, validate (the same kind of split that chose the zoo's
   hyper-parameters);
3. each model (kwargs from ``conf/base/parameters/model_zoo.yml``) is fit on the most
   recent ``f`` of the inner training race days, for each ``f`` in ``--fractions``, on
   ``FUNDAMENTAL_FEATURES``, and scored on the inner validation races.

A curve that is still rising at ``f = 1`` says more races would help; a flat one says
the features carry no more than the model already extracts. As a yardstick it also
reports the market's pseudo-R² (from ``odds_final``, the protocol's market probability)
on every period, and each model's share of it: a period where the market is stronger is
harder for everyone, so the share compares periods where the raw figures cannot.

``--variant MODEL 'YAML mapping'`` (repeatable) adds a row for ``MODEL`` with those
keyword arguments over its zoo kwargs (e.g. ``--variant random_forest '{model_params:
{max_samples: 0.5}}'``): the inner-split trial of a cheaper setting. Every fit runs with
the numerical libraries held to one thread (``runtime.n_threads``) and reports its CPU
seconds beside its wall seconds.

``--contribution`` instead measures what each zoo model adds to the stacked prediction
on the inner split: from the pipeline's out-of-fold predictions of the training races
(``data/05_model_input/zoo/<model>_oof.parquet``), the stacker (``--env``'s settings) is
fit on the earlier 70% of their race days with and without that one model and scored on
the rest (mean winner log loss per race, as the serving subset's trials:
racecast.pipelines.model_zoo.serving).

It prints a table and writes ``data/08_reporting/learning_curve.json``.

Run from the repository root: ``.venv/bin/python benchmarks/learning_curve.py
[--training-set PATH] [--fractions 0.25,0.5,0.75,1] [--models a,b] [--variant MODEL YAML]
[--env hkjc] [--contribution] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from racecast.evaluation.metrics import market_probability, pseudo_r2, single_winner_races
from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.models.base import relevance_from_position
from racecast.models.factory import build_model
from racecast.models.split import compute_race_days, holdout_split
from racecast.pipelines.model_zoo.nodes import split_training_set
from racecast.threads import limit_threads

logger = logging.getLogger("benchmarks.learning_curve")

MODEL_ZOO_YML = Path("conf/base/parameters/model_zoo.yml")
DEFAULT_TRAINING_SET = Path("data/05_model_input/training_set.parquet")
DEFAULT_OUTPUT = Path("data/08_reporting/learning_curve.json")
DEFAULT_MODELS = "conditional_logit,lgbm_classifier"
DEFAULT_OOF_DIR = Path("data/05_model_input/zoo")


def _fractions(text: str) -> list[float]:
    """``--fractions``: comma-separated floats in (0, 1]."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--fractions: {error}") from error
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if not values or bad:
        raise argparse.ArgumentTypeError(
            f"--fractions must be comma-separated numbers in (0, 1], got {text!r}"
        )
    return sorted(values)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-set", type=Path, default=DEFAULT_TRAINING_SET)
    parser.add_argument("--fractions", type=_fractions, default=_fractions("0.25,0.5,0.75,1"))
    parser.add_argument(
        "--inner-fraction",
        type=float,
        default=0.25,
        help="share of the training races (whole days, the latest) that validate",
    )
    parser.add_argument("--models", default=DEFAULT_MODELS, help="zoo model names, comma-separated")
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "KWARGS"),
        help="a zoo model with these kwargs (a YAML mapping) over its own; repeatable",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--env", help="a conf env whose model_zoo.yml overrides base's")
    parser.add_argument(
        "--contribution",
        action="store_true",
        help="each zoo model's share of the stacked prediction (from the run's OOF files)",
    )
    parser.add_argument("--oof-dir", type=Path, default=DEFAULT_OOF_DIR)
    args = parser.parse_args(argv)
    try:
        args.variant = [(m, yaml.safe_load(text) or {}) for m, text in args.variant]
    except yaml.YAMLError as error:
        parser.error(f"--variant: {error}")
    if any(not isinstance(kwargs, dict) for _, kwargs in args.variant):
        parser.error("--variant: KWARGS must be a YAML mapping")
    if not 0.0 < args.inner_fraction < 1.0:
        parser.error(f"--inner-fraction must be in (0, 1), got {args.inner_fraction}")
    if not args.training_set.is_file():
        parser.error(
            f"--training-set {args.training_set}: no such file "
            "(run `make run` or `kedro run --env hkjc` first)"
        )
    return args


def market_pseudo_r2(frame: pd.DataFrame) -> float:
    """Protocol market pseudo-R² of ``frame`` (single-winner races with a full market)."""
    scored = frame.assign(p_market=market_probability(frame))
    races_ok = scored.groupby("race_id")["p_market"].transform(lambda p: p.notna().all())
    return pseudo_r2(single_winner_races(scored[races_ok.to_numpy(bool)]), "p_market")


def model_pseudo_r2(
    spec: dict[str, Any], relevance_top: int | None, fit: pd.DataFrame, score: pd.DataFrame
) -> float:
    """Fit ``spec`` on ``fit`` (fundamental features) and score ``score``'s single winners."""
    relevance = None
    if relevance_top is not None:
        relevance = relevance_from_position(fit["position"].astype("float64"), top=relevance_top)
    model = build_model(spec).fit(
        fit[FUNDAMENTAL_FEATURES], fit["won"], fit["race_id"], relevance=relevance
    )
    p = model.predict_proba(score[FUNDAMENTAL_FEATURES], score["race_id"])
    scored = score.assign(p_model=np.asarray(p, dtype="float64"))
    return pseudo_r2(single_winner_races(scored), "p_model")


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys, mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merged(out[key], value)
        out[key] = value
    return out


def with_variants(
    zoo: dict[str, Any], models: list[str], variants: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[str, Any], list[str]]:
    """``zoo`` plus one entry per variant (``"MODEL {kwargs}"``) and the names to run."""
    zoo = {**zoo, "models": dict(zoo["models"])}
    names = list(models)
    for model, kwargs in variants:
        spec = zoo["models"][model]
        label = f"{model} {json.dumps(kwargs, separators=(',', ':'))}"
        zoo["models"][label] = {**spec, "kwargs": _merged(spec.get("kwargs") or {}, kwargs)}
        by_model = (zoo.get("cv") or {}).get("relevance_top_by_model") or {}
        if model in by_model:
            zoo["cv"] = {
                **zoo["cv"],
                "relevance_top_by_model": {**by_model, label: by_model[model]},
            }
        names.append(label)
    return zoo, names


def learning_curve(
    training_set: pd.DataFrame,
    zoo: dict[str, Any],
    models: list[str],
    fractions: list[float],
    inner_fraction: float,
) -> dict[str, Any]:
    """Inner-split learning curve of ``models`` plus the market yardstick per period.

    Args:
        training_set: The pipeline's training set (all races, holdout included).
        zoo: ``model_zoo`` parameters.
        models: Zoo model names.
        fractions: Shares of the inner training race days (the most recent) to fit on.
        inner_fraction: Share of the training races that validate.

    Returns:
        The report (periods, market figures and one row per fraction).
    """
    train, hold, info = split_training_set(training_set, zoo)
    inner = holdout_split(train, inner_fraction)
    fit_all = train[~inner.holdout_mask(train).to_numpy(bool)]
    validate = train[inner.holdout_mask(train).to_numpy(bool)]
    days = compute_race_days(fit_all)
    unique_days = np.sort(days.unique())
    market = {
        "inner_fit": market_pseudo_r2(fit_all),
        "inner_validation": market_pseudo_r2(validate),
        "protocol_holdout": market_pseudo_r2(hold),
    }
    cv = zoo.get("cv", {}) or {}
    relevance_top = cv.get("relevance_top")
    by_model = cv.get("relevance_top_by_model") or {}
    rows = []
    for fraction in fractions:
        start = min(int(round((1.0 - fraction) * len(unique_days))), len(unique_days) - 1)
        first_day = unique_days[start]  # at least the last race day
        subset = fit_all[(days >= first_day).to_numpy(bool)]
        row: dict[str, Any] = {
            "fraction": fraction,
            "n_fit_races": int(subset["race_id"].nunique()),
        }
        for name in models:
            spec = zoo["models"][name]
            ranker = "rank" in str(spec.get("class", "")).lower()
            top = by_model.get(name, relevance_top if ranker else None)
            started, cpu = time.perf_counter(), time.process_time()
            value = model_pseudo_r2(spec, int(top) if top else None, subset, validate)
            row[name] = {
                "pseudo_r2": value,
                "share_of_market": value / market["inner_validation"],
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
            }
            logger.info(
                "fraction %.2f %s: %.4f (%.1f CPU s)",
                fraction,
                name,
                value,
                row[name]["cpu_seconds"],
            )
        rows.append(row)
    return {
        "protocol_split": info,
        "inner_validation_start": inner.holdout_start.date().isoformat(),
        "n_inner_fit_races": int(fit_all["race_id"].nunique()),
        "n_inner_validation_races": int(validate["race_id"].nunique()),
        "market_pseudo_r2": market,
        "curve": rows,
    }


def stack_contribution(
    train_set: pd.DataFrame, oofs: dict[str, pd.DataFrame], zoo: dict[str, Any]
) -> dict[str, Any]:
    """Inner-split stacked log loss with every model and without each one in turn.

    Args:
        train_set: The zoo's training runners (``model_zoo.train_set``, no holdout).
        oofs: Model name -> its out-of-fold predictions of the training races.
        zoo: ``model_zoo`` parameters (the stacker's settings).

    Returns:
        ``{"full_log_loss", "without": {model: {"log_loss", "cost"}}, "fit_races", ...}``.
    """
    from racecast.pipelines.model_zoo.serving import select_serving_subset

    without = {}
    inner: dict[str, Any] = {}
    for name in oofs:
        settings = {"enabled": True, "tolerance": 0.0, "drop_order": [name]}
        started = time.process_time()
        inner = select_serving_subset(train_set, {**zoo, "serving_subset": settings}, **oofs)[
            "inner"
        ]
        [trial] = inner["trials"]
        without[name] = {
            "log_loss": trial["log_loss"],
            "cost": trial["cost"],
            "cpu_seconds": time.process_time() - started,
        }
        logger.info("without %s: inner stacked log loss %+.5f", name, trial["cost"])
    return {
        "full_log_loss": inner["full_log_loss"],
        "fit_races": inner["fit_races"],
        "scored_races": inner["scored_races"],
        "first_scored_day": inner["first_scored_day"],
        "without": without,
    }


def render(report: dict[str, Any], models: list[str]) -> Table:
    """The curve as a rich table."""
    table = Table(title="Learning curve on the inner split (pseudo-R², share of the market, CPU s)")
    table.add_column("fit on", justify="right")
    table.add_column("races", justify="right")
    for name in models:
        table.add_column(name, justify="right")
    for row in report["curve"]:
        cells = [
            f"{row[name]['pseudo_r2']:.4f} ({row[name]['share_of_market']:.3f}, "
            f"{row[name]['cpu_seconds']:.0f})"
            for name in models
        ]
        table.add_row(f"{row['fraction']:.0%}", str(row["n_fit_races"]), *cells)
    return table


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and write the JSON report."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    zoo = yaml.safe_load(MODEL_ZOO_YML.read_text())["model_zoo"]
    if args.env:
        env_yml = Path("conf") / args.env / "parameters" / "model_zoo.yml"
        zoo = _merged(zoo, (yaml.safe_load(env_yml.read_text()) or {}).get("model_zoo") or {})
    if args.contribution:
        limit_threads(1)
        train = pd.read_parquet(args.oof_dir / "train_set.parquet")
        oofs = {
            name: pd.read_parquet(args.oof_dir / f"{name}_oof.parquet") for name in zoo["models"]
        }
        report = stack_contribution(train, oofs, zoo)
        report["env"] = args.env
        report["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        console = Console()
        console.print(
            f"inner stacked log loss {report['full_log_loss']:.5f} (fit on "
            f"{report['fit_races']} races, scored on {report['scored_races']})"
        )
        for name, row in report["without"].items():
            console.print(f"without {name}: {row['log_loss']:.5f} ({row['cost']:+.5f})")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2))
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(zoo["models"]))
    if not models or unknown:
        raise SystemExit(
            f"--models: unknown zoo model(s) {unknown}; known: {sorted(zoo['models'])}"
        )
    unknown = sorted({m for m, _ in args.variant} - set(zoo["models"]))
    if unknown:
        raise SystemExit(f"--variant: unknown zoo model(s) {unknown}")
    limit_threads(1)
    zoo, models = with_variants(zoo, models, args.variant)
    frame = pd.read_parquet(args.training_set)
    report = learning_curve(frame, zoo, models, args.fractions, args.inner_fraction)
    report["training_set"] = str(args.training_set)
    report["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    report["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    console = Console()
    console.print(render(report, models))
    console.print(
        "market pseudo-R²: "
        + ", ".join(f"{k} {v:.4f}" for k, v in report["market_pseudo_r2"].items())
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
