"""Market features: an on-demand view over the racecard's final odds (request data).

Computed per race by racecast.features.transform.market_features, the same function the
training set uses, so both paths give identical numbers.
"""

import pandas as pd
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, String

from racecast.features.specs import MARKET_FEATURES

race_odds = RequestSource(
    name="race_odds",
    schema=[Field(name="race_id", dtype=String), Field(name="odds_final", dtype=Float64)],
    description="Final (at the off) decimal odds of each runner, from the racecard.",
)


@on_demand_feature_view(
    sources=[race_odds],
    schema=[Field(name=name, dtype=Float64) for name in MARKET_FEATURES],
    mode="pandas",
    description="Log market probability, odds rank and overround-normalised odds per race.",
)
def market_odds(inputs: pd.DataFrame) -> pd.DataFrame:
    from racecast.features.transform import market_features

    return market_features(inputs)[MARKET_FEATURES].astype("float64")
