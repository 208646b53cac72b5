"""The synthetic world's signal is recoverable from what is known before the off.

End to end on a 120-race-day world (~13,000 runners): the simulator's JSON goes through
the ingestion library (``parse_racecards``, ``validate_and_split``), the reference
feature path (``entity_frame``, ``build_state_tables``, ``point_in_time_join``,
``build_features``), the protocol split, and a conditional logit on the fundamental
features with the zoo's default settings. It must recover most of the oracle's log-loss
improvement over uniform on the holdout. ``benchmarks/signal_recovery.py`` runs the
same steps on the default world (300 days) and reports more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from racecast.evaluation.metrics import evaluate, single_winner_races
from racecast.features.entities import entity_frame
from racecast.features.specs import FUNDAMENTAL_FEATURES, LABEL_COLUMNS, STATE_TTL_DAYS
from racecast.features.state import build_state_tables
from racecast.features.transform import build_features, point_in_time_join
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import validate_and_split
from racecast.models.linear import ConditionalLogit
from racecast.models.split import holdout_split
from racecast.pipelines.simulation.nodes import racecard_partitions
from racecast.simulation import SimulationConfig, simulate

PARAMETERS = Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters"
INGESTION = {"source": "synthetic", "months": None}
KEYS = ["race_id", "horse_id"]


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    """Holdout runners of a 120-day world with the oracle and a conditional logit's p."""
    world = simulate(SimulationConfig(seed=1, n_days=120, show_progress=False))
    texts = racecard_partitions(world)
    parsed = parse_racecards({pid: (lambda t=t: t) for pid, t in texts.items()}, INGESTION)
    races, runners, quarantine, _ = validate_and_split(*parsed, INGESTION)
    assert quarantine.empty, "the simulator must write data that ingests cleanly"

    compute = yaml.safe_load((PARAMETERS / "features.yml").read_text())["features"]["compute"]
    context = entity_frame(races, runners)
    context = context[context["won"].notna()].reset_index(drop=True)
    joined = point_in_time_join(
        context, build_state_tables(races, runners, compute), ttl_days=STATE_TTL_DAYS
    )
    data = pd.concat(
        [
            build_features(context, joined.drop(columns=context.columns), compute),
            context[["odds_final", *LABEL_COLUMNS]],
        ],
        axis=1,
    ).merge(world.oracle, on=KEYS, validate="one_to_one")

    split = holdout_split(data, 0.2)
    train = data[split.train_mask(data)].reset_index(drop=True)
    hold = data[split.holdout_mask(data)].reset_index(drop=True)
    spec = yaml.safe_load((PARAMETERS / "model_zoo.yml").read_text())["model_zoo"]
    model = ConditionalLogit(**spec["models"]["conditional_logit"]["kwargs"])
    model.fit(train[FUNDAMENTAL_FEATURES], train["won"].astype("int64"), train["race_id"])
    hold["p_model"] = model.predict_proba(hold[FUNDAMENTAL_FEATURES], hold["race_id"])
    hold["p_oracle"] = hold["p_true"] / hold.groupby("race_id")["p_true"].transform("sum")
    return single_winner_races(hold)


def expected_log_loss(frame: pd.DataFrame, col: str) -> float:
    """Mean over races of ``-sum_i p_true_i log p_i`` (the log loss expected under p_true)."""
    terms = -(frame["p_oracle"] * np.log(frame[col]))
    return float(terms.groupby(frame["race_id"]).sum().mean())


def test_conditional_logit_recovers_most_of_the_oracles_signal(holdout):
    # signal_recovered = (LL_uniform - LL_model) / (LL_uniform - LL_oracle) on ~280
    # holdout races. Measured with the default effects on seeds 1, 2, 3: 0.839, 0.852,
    # 0.828 (the default 300-day world: 0.909, more training races). Its sampling sd is
    # 0.051 here (bootstrap over the holdout races of seed 1), so 0.70 sits 2.5 sd below
    # the lowest measurement; the world before the effects were made observable gave
    # ~0.3 (0.32 on the 300-day world).
    metrics = evaluate(holdout, "p_model", oracle_col="p_oracle")
    assert metrics["n_single_winner"] > 200
    assert metrics["signal_recovered"] >= 0.70


def test_expected_signal_recovered_is_high(holdout):
    # The same ratio with each log loss replaced by its expectation under p_true: no
    # outcome noise, only the model's error: 0.824, 0.838, 0.816 on seeds 1, 2, 3 (the
    # former world: ~0.33 on 300 days).
    uniform = float(np.log(holdout.groupby("race_id").size()).mean())
    oracle = expected_log_loss(holdout, "p_oracle")
    model = expected_log_loss(holdout, "p_model")
    assert oracle < model < uniform
    assert (uniform - model) / (uniform - oracle) >= 0.75
