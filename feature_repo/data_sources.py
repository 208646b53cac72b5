"""Offline sources: the post-race state tables the Kedro `features` pipeline writes.

Each row is the state of an entity AFTER one of its races, timestamped strictly after that
race's off (``event_timestamp = off_time + post_race_delay``), so the point-in-time join
of a race at time T only sees races run before T.

One definition per view for every offline store: a FileSource (DuckDB, the default) or a
SparkSource over the same parquet file when the active yaml names the Spark store
(``feature_store.scale.yaml``); ``racecast.features.engines.state_source`` decides.

Paths are absolute (resolved from this file), because Feast resolves FileSource paths
against the working directory, not the repo.
"""

from pathlib import Path

from racecast.features.engines import state_source

REPO = Path(__file__).resolve().parent
FEATURE_DATA = REPO.parent / "data" / "04_feature"

horse_form_source = state_source("horse_form", FEATURE_DATA, REPO)
jockey_form_source = state_source("jockey_form", FEATURE_DATA, REPO)
trainer_form_source = state_source("trainer_form", FEATURE_DATA, REPO)
jockey_trainer_form_source = state_source("jockey_trainer_form", FEATURE_DATA, REPO)
horse_jockey_form_source = state_source("horse_jockey_form", FEATURE_DATA, REPO)
track_profile_source = state_source("track_profile", FEATURE_DATA, REPO)
