"""One market-probability function (racecast.features.market), used by every layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.evaluation.metrics import market_probability
from racecast.features import transform
from racecast.features.market import market_probabilities


def _runners(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 600
    race = rng.integers(0, 60, n)
    odds = np.round(rng.uniform(1.2, 99.0, n), 1)
    odds[rng.random(n) < 0.02] = np.nan  # some races have an unpriced runner
    return pd.DataFrame({"race_id": [f"r{r}" for r in race], "odds_final": odds})


def test_protocol_market_is_pandas_groupby_to_the_last_bit() -> None:
    frame = _runners()
    inverse = 1.0 / frame["odds_final"]
    no_market = frame["odds_final"].isna().groupby(frame["race_id"]).transform("any")
    reference = (inverse / inverse.groupby(frame["race_id"]).transform("sum")).mask(no_market)
    ours = market_probability(frame)
    np.testing.assert_array_equal(ours.to_numpy(), reference.to_numpy())
    assert ours.isna().any() and ours.notna().any()


def test_features_use_the_same_probabilities_on_priced_races() -> None:
    frame = _runners(1)
    features = transform.market_features(frame)
    p = market_probability(frame)
    priced = p.notna()
    np.testing.assert_array_equal(
        features.loc[priced, "mkt_log_prob"].to_numpy(), np.log(p[priced].to_numpy())
    )
    # a race with an unpriced runner: the features normalise the priced runners
    partial = features.loc[~priced & frame["odds_final"].notna(), "mkt_log_prob"]
    assert len(partial) and np.isfinite(partial).all()


def test_invalid_odds_raise_or_count_as_unpriced() -> None:
    odds = np.array([0.5, 2.0, 4.0])
    codes = np.zeros(3, dtype=int)
    with pytest.raises(ValueError, match="below 1"):
        market_probabilities(odds, codes, 1)
    p, book = market_probabilities(odds, codes, 1, partial=True, invalid="nan")
    assert np.isnan(p[0]) and p[1:] == pytest.approx([2 / 3, 1 / 3])
    assert book[1] == pytest.approx(0.75)
