"""The combined track's decision rule on small synthetic worlds with fixed seeds.

A world with a known small edge (the fundamental sees a term of the true utility that the
market misses) must ship a candidate; a world whose fundamental is pure noise must ship
``market_corrected``. The market's prices are bent (a favourite-longshot bias and capped
long prices) so that ``market_corrected`` has something to correct.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.evaluation.decision import decide, gain_test
from racecast.evaluation.second_stage import CombinedTrack, market_inputs, rolling_second_stage
from racecast.models.market import MarketCorrection

N_RUNNERS = 8
FEATURES = ["x_fund"]


def _softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _world(n_races: int, edge: float, seed: int) -> pd.DataFrame:
    """Runners of ``n_races`` races, one race a day; ``x_fund`` carries ``edge`` of the truth."""
    rng = np.random.default_rng(seed)
    shape = (n_races, N_RUNNERS)
    seen = rng.normal(size=shape)
    hidden = rng.normal(size=shape)
    truth = _softmax(seen + edge * hidden)
    winners = np.array([rng.choice(N_RUNNERS, p=row) for row in truth])
    market = _softmax(1.15 * seen)  # over-confident: the correction has work to do
    odds = np.minimum(np.round(1.0 / (0.85 * market), 1).clip(1.01), 99.0)
    x_fund = hidden if edge > 0 else rng.normal(size=shape)
    race = np.repeat(np.arange(n_races), N_RUNNERS)
    won = np.zeros(shape)
    won[np.arange(n_races), winners] = 1
    return pd.DataFrame(
        {
            "race_id": [f"r{r:05d}" for r in race],
            "horse_id": [f"h{i}" for i in range(race.size)],
            "off_time": pd.Timestamp("2020-01-01 12:00", tz="UTC")
            + pd.to_timedelta(race, unit="D"),
            "won": won.ravel().astype(int),
            "position": 1 + np.argsort(np.argsort(-truth, axis=1), axis=1).ravel(),
            "odds_final": odds.ravel(),
            "odds_capped": odds.ravel() >= 99.0,
            "x_fund": x_fund.ravel(),
            "p_model": _softmax(x_fund).ravel(),
        }
    )


class _PassThroughStacker:
    """A "stacker" whose output is its single input (the tests' fundamental model)."""

    def predict_proba(self, X: pd.DataFrame, groups: pd.Series) -> np.ndarray:
        p = X["p_model"].to_numpy(dtype=float)
        return p / pd.Series(p).groupby(groups.to_numpy()).transform("sum").to_numpy()


PARAMS = {
    "n_folds": 4,
    "first_fraction": 0.25,
    "alpha": 0.05,
    "power": 0.8,
    "reference_pseudo_r2_gain": 0.002,
    "extra_market_terms": [],
    "residual": {
        "n_estimators": 30,
        "learning_rate": 0.1,
        "num_leaves": 3,
        "min_child_samples": 50,
    },
}


def _run(world: pd.DataFrame) -> CombinedTrack:
    meta = world[["race_id", "horse_id", "off_time", "won", "position", "p_model"]]
    track, stacked = rolling_second_stage(
        world, meta, ["p_model"], lambda rows: _PassThroughStacker(), FEATURES, PARAMS
    )
    assert stacked["p_fund"].notna().all() and len(stacked) < len(world)
    return track


def test_rule_ships_a_candidate_when_the_fundamental_has_a_small_edge() -> None:
    track = _run(_world(1200, edge=0.35, seed=7))
    decision = track.decision_
    assert decision["choice"] in ("benter", "residual")
    test = decision["tests"][decision["choice"]]
    assert test["mean_gain"] > 0 and test["p_value"] < 0.05 / 2
    assert test["mde"] > 0 and 0 < test["power_at_reference"] < 1
    assert track.benter_.coef_[0] > 0.2  # the blend puts weight on the fundamental
    assert track.validation_["staking"]["combined"]["n_races"] > 0


def test_rule_ships_market_corrected_when_the_fundamental_is_noise() -> None:
    track = _run(_world(1200, edge=0.0, seed=7))
    decision = track.decision_
    assert decision["choice"] == "market_corrected"
    assert all(not t["passes"] for t in decision["tests"].values())
    assert track.validation_["staking"]["combined"]["stakeable"] is False
    # the corrected market still beats the over-confident plain market out of sample
    assert decision["market_corrected_vs_market"]["mean_gain"] > 0


def test_market_correction_undoes_a_known_temperature_and_cap() -> None:
    world = _world(1500, edge=0.0, seed=3)
    p = 1.0 / world["odds_final"]
    p = (p / p.groupby(world["race_id"]).transform("sum")).to_numpy()
    args = (
        p,
        world["odds_capped"].to_numpy(),
        world["won"].to_numpy(),
        world["race_id"].to_numpy(),
    )
    temperature = MarketCorrection(terms=("log_p",)).fit(*args)
    # the market is 1.15 x the truth's log-odds: the fitted temperature is near 1/1.15
    assert temperature.describe()["log_p"]["coef"] == pytest.approx(1 / 1.15, abs=0.1)
    model = MarketCorrection().fit(*args)
    assert set(model.describe()) == {"log_p", "log_p_sq", "capped"}
    assert model.log_likelihood_ > model.market_log_likelihood_
    probs = model.predict_proba(p, world["odds_capped"].to_numpy(), world["race_id"].to_numpy())
    sums = pd.Series(probs).groupby(world["race_id"].to_numpy()).sum()
    assert np.allclose(sums, 1.0)


def test_decide_splits_alpha_and_reports_power() -> None:
    rng = np.random.default_rng(0)
    gains = {"a": rng.normal(0.05, 0.5, 2000), "b": rng.normal(0.0, 0.5, 2000)}
    out = decide(gains, alpha=0.05, power=0.8, reference_gain=0.01)
    assert out["tests"]["a"]["alpha"] == pytest.approx(0.025)
    assert out["choice"] == "a"
    one = gain_test(gains["a"], 0.025, power=0.8, reference_gain=0.01)
    # MDE = (z_0.975 + z_0.8) * SE
    assert one["mde"] == pytest.approx((1.959964 + 0.841621) * one["se"], rel=1e-4)
    assert decide({"b": gains["b"]}, alpha=0.05)["choice"] == "market_corrected"


def test_a_term_without_information_is_fixed_at_zero() -> None:
    world = _world(400, edge=0.0, seed=5)
    p = 1.0 / world["odds_final"]
    p = (p / p.groupby(world["race_id"]).transform("sum")).to_numpy()
    never_capped = np.zeros(len(world))
    model = MarketCorrection().fit(
        p, never_capped, world["won"].to_numpy(), world["race_id"].to_numpy()
    )
    terms = model.describe()
    assert terms["capped"]["coef"] == 0.0 and np.isnan(terms["capped"]["se"])
    assert np.isfinite(terms["log_p"]["se"]) and np.isfinite(terms["log_p_sq"]["se"])


class _TemperedStacker:
    """A stacker with a fitted temperature (the mean winner log-probability of its rows);
    it writes the id of the process that fitted it to ``pid_dir``."""

    def __init__(self, rows: pd.DataFrame, pid_dir) -> None:
        import os

        self.t_ = 1.0 - float(np.log(rows.loc[rows["won"] == 1, "p_model"]).mean()) / 10.0
        (pid_dir / f"{os.getpid()}-{len(rows)}").touch()

    def predict_proba(self, X: pd.DataFrame, groups: pd.Series) -> np.ndarray:
        u = np.exp(self.t_ * np.log(X["p_model"].to_numpy(dtype=float)))
        return u / pd.Series(u).groupby(groups.to_numpy()).transform("sum").to_numpy()


def test_block_fits_on_two_processes_give_the_one_process_figures(tmp_path) -> None:
    import os

    world = _world(600, edge=0.35, seed=3)
    meta = world[["race_id", "horse_id", "off_time", "won", "position", "p_model"]]
    runs = {}
    for n_jobs in (1, 2):
        pid_dir = tmp_path / str(n_jobs)
        pid_dir.mkdir()
        track, stacked = rolling_second_stage(
            world,
            meta,
            ["p_model"],
            lambda rows, pid_dir=pid_dir: _TemperedStacker(rows, pid_dir),
            FEATURES,
            {**PARAMS, "n_jobs": n_jobs},
        )
        pids = {int(path.name.split("-")[0]) for path in pid_dir.iterdir()}
        runs[n_jobs] = (track, stacked, pids)
    (one, one_stacked, one_pids), (two, two_stacked, two_pids) = runs[1], runs[2]
    assert one_pids == {os.getpid()}
    assert os.getpid() not in two_pids  # the block stackers were fit in other processes
    pd.testing.assert_frame_equal(one_stacked, two_stacked, check_exact=True)
    assert one.decision_ == two.decision_  # every test figure of every candidate
    assert one.validation_ == two.validation_
    rows = world.iloc[:400]
    p, capped, has = market_inputs(rows)
    assert has.all()
    args = (rows["p_model"].to_numpy(), p, capped)
    kwargs = {"features": rows[FEATURES].to_numpy(), "groups": rows["race_id"].to_numpy()}
    for name, values in one.predict_candidates(*args, **kwargs).items():
        np.testing.assert_array_equal(values, two.predict_candidates(*args, **kwargs)[name])
