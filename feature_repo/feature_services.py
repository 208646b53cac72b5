"""Feature services: the only feature contracts of racecast's model tracks.

A model track names its service; training reads it with get_historical_features and the
inference service reads the same service online. Race-conditional and race-relative
features are derived from the served state by racecast.features.transform.build_features,
one function for both paths.
"""

from feast import FeatureService
from feature_views import (
    horse_form,
    horse_jockey_form,
    jockey_form,
    jockey_trainer_form,
    track_profile,
    trainer_form,
)
from market import market_odds

# No odds-derived input at all.
fundamental_v1 = FeatureService(
    name="fundamental_v1",
    features=[horse_form, jockey_form, trainer_form, jockey_trainer_form, horse_jockey_form, track_profile],
    tags={"track": "fundamental", "version": "1"},
    description="Fundamental track: horse, connections and track state, no market input.",
)

# Fundamental state plus the market's view (odds at the off, from the racecard).
combined_v1 = FeatureService(
    name="combined_v1",
    features=[
        horse_form,
        jockey_form,
        trainer_form,
        jockey_trainer_form,
        horse_jockey_form,
        track_profile,
        market_odds,
    ],
    tags={"track": "combined", "version": "1"},
    description="Combined track: fundamental state plus market features from the final odds.",
)
