"""How many places should the conditional logit read? (training period only)

Reads a training set written by the pipeline (``data/05_model_input/training_set.parquet``
after ``make run`` or ``kedro run --env hkjc``) and never looks at the protocol holdout:

1. the protocol split (``split_training_set``) keeps the training races only;
2. two inner time splits of them, cut at whole race days: **A** fits on the first 75% of
   the training race days and scores the last 25%; **B** fits on the first 50% and
   scores the next 25% (the last 25% unused);
3. for each ``rank_depth`` in ``--depths`` and ``alpha`` in ``--alphas``, a
   :class:`~racecast.models.linear.ConditionalLogit` (the exploded logit of the first
   ``rank_depth`` places; 1 = the winner only) is fit on ``FUNDAMENTAL_FEATURES`` with
   the graded relevance of the first ``rank_depth`` places and scored on the split's
   validation races.

Reported per fit: pseudo-R² on the single-winner races and, when the oracle table of the
synthetic world exists (``--oracle``), ``signal_recovered`` and its lower-noise version
``expected_signal_recovered`` (every log loss replaced by its expectation under the
oracle's ``p_true``, as in ``benchmarks/signal_recovery.py``). It prints a table and
writes ``data/08_reporting/rank_depth.json``.

Run from the repository root: ``.venv/bin/python benchmarks/rank_depth.py
[--training-set PATH] [--oracle PATH] [--depths 1,3,6,10,20] [--alphas 0.01,0.03]``.
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

from racecast.evaluation.metrics import evaluate, market_probability, single_winner_races
from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.models.base import relevance_from_position
from racecast.models.linear import ConditionalLogit
from racecast.models.split import compute_race_days
from racecast.pipelines.model_zoo.nodes import split_training_set

logger = logging.getLogger("benchmarks.rank_depth")

MODEL_ZOO_YML = Path("conf/base/parameters/model_zoo.yml")
DEFAULT_TRAINING_SET = Path("data/05_model_input/training_set.parquet")
DEFAULT_ORACLE = Path("data/03_primary/oracle_win_probabilities.parquet")
DEFAULT_OUTPUT = Path("data/08_reporting/rank_depth.json")
#: (name, first day share, last day share) of the fit and validation periods.
SPLITS = {"A": ((0.0, 0.75), (0.75, 1.0)), "B": ((0.0, 0.5), (0.5, 0.75))}


def _numbers(kind: type, text: str) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-set", type=Path, default=DEFAULT_TRAINING_SET)
    parser.add_argument("--oracle", type=Path, default=DEFAULT_ORACLE)
    parser.add_argument("--depths", default="1,3,6,10,20")
    parser.add_argument("--alphas", default="0.01,0.03")
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if not args.training_set.is_file():
        parser.error(
            f"--training-set {args.training_set}: no such file "
            "(run `make run` or `kedro run --env hkjc` first)"
        )
    args.depths = _numbers(int, args.depths)
    args.alphas = _numbers(float, args.alphas)
    if not args.depths or min(args.depths) < 1 or not args.alphas or min(args.alphas) < 0:
        parser.error("--depths must be integers >= 1 and --alphas numbers >= 0")
    return args


def period(frame: pd.DataFrame, days: pd.Series, share: tuple[float, float]) -> pd.DataFrame:
    """Rows whose race day lies in ``[share[0], share[1])`` of the distinct race days."""
    unique = np.sort(days.unique())
    lo = unique[int(round(share[0] * len(unique)))]
    hi = unique[int(round(share[1] * len(unique)))] if share[1] < 1.0 else None
    keep = (days >= lo) & ((days < hi) if hi is not None else True)
    return frame[keep.to_numpy(bool)]


def scores(frame: pd.DataFrame, prob_col: str, oracle: bool) -> dict[str, float]:
    """Pseudo-R² (and the oracle figures when ``p_oracle`` is there) of ``prob_col``."""
    single = single_winner_races(frame)
    metrics = evaluate(single, prob_col, oracle_col="p_oracle" if oracle else None)
    out = {"pseudo_r2": float(metrics["pseudo_r2"])}
    if oracle:
        out["signal_recovered"] = float(metrics["signal_recovered"])
        race = single["race_id"]
        expected = (-(single["p_oracle"] * np.log(single[prob_col]))).groupby(race).sum().mean()
        entropy = (-(single["p_oracle"] * np.log(single["p_oracle"]))).groupby(race).sum().mean()
        uniform = float(np.log(single.groupby("race_id").size()).mean())
        out["expected_signal_recovered"] = float((uniform - expected) / (uniform - entropy))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit every (split, depth, alpha) and return the report."""
    zoo = yaml.safe_load(MODEL_ZOO_YML.read_text())["model_zoo"]
    frame = pd.read_parquet(args.training_set)
    train, _, info = split_training_set(frame, zoo)
    oracle = args.oracle.is_file()
    if oracle:
        truth = pd.read_parquet(args.oracle)[["race_id", "horse_id", "p_true"]]
        train = train.merge(truth, on=["race_id", "horse_id"], how="left", validate="one_to_one")
        train["p_oracle"] = train["p_true"] / train.groupby("race_id")["p_true"].transform("sum")
    days = compute_race_days(train)
    rows = []
    for split, (fit_share, val_share) in SPLITS.items():
        fit = period(train, days, fit_share)
        validate = period(train, days, val_share).copy()
        validate["p_market"] = market_probability(validate)
        market = scores(validate, "p_market", oracle)
        rows.append({"split": split, "model": "market", **market})
        for depth in args.depths:
            relevance = relevance_from_position(fit["position"].astype("float64"), top=depth)
            for alpha in args.alphas:
                started = time.perf_counter()
                model = ConditionalLogit(alpha=alpha, max_iter=args.max_iter, rank_depth=depth)
                model.fit(fit[FUNDAMENTAL_FEATURES], fit["won"], fit["race_id"], relevance)
                validate["p_model"] = model.predict_proba(
                    validate[FUNDAMENTAL_FEATURES], validate["race_id"]
                )
                row = {
                    "split": split,
                    "model": f"rank_depth {depth}, alpha {alpha}",
                    "rank_depth": depth,
                    "alpha": alpha,
                    "n_fit_races": int(fit["race_id"].nunique()),
                    "n_validation_races": int(validate["race_id"].nunique()),
                    "fit_seconds": round(time.perf_counter() - started, 1),
                    **scores(validate, "p_model", oracle),
                }
                logger.info("%s", row)
                rows.append(row)
    return {"protocol_split": info, "oracle": oracle, "rows": rows}


def render(report: dict[str, Any]) -> Table:
    """The report as a rich table."""
    table = Table(title="Conditional logit by rank depth on inner splits of the training period")
    keys = ["pseudo_r2", "signal_recovered", "expected_signal_recovered", "fit_seconds"]
    keys = [k for k in keys if any(k in row for row in report["rows"])]
    for col in ["split", "model", *keys]:
        table.add_column(col, justify="left" if col in ("split", "model") else "right")
    for row in report["rows"]:
        table.add_row(
            row["split"], row["model"], *(f"{row.get(k, float('nan')):.4f}" for k in keys)
        )
    return table


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and write the JSON report."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    report = run(args)
    report["training_set"] = str(args.training_set)
    report["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    report["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    console = Console()
    console.print(render(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
