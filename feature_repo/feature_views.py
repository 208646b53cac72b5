"""Feature views: one per entity state table (schemas come from racecast.features.specs)."""

from datetime import timedelta

from data_sources import (
    horse_form_source,
    horse_jockey_form_source,
    jockey_form_source,
    jockey_trainer_form_source,
    track_profile_source,
    trainer_form_source,
)
from entities import horse, jockey, track, trainer
from feast import FeatureView

from racecast.features.specs import STATE_TTL_DAYS, VIEWS
from racecast.features.store import feast_schema

# Horses rest for months between runs; a state older than this is treated as unknown.
STATE_TTL = timedelta(days=STATE_TTL_DAYS)

horse_form = FeatureView(
    name="horse_form",
    entities=[horse],
    ttl=STATE_TTL,
    schema=feast_schema(VIEWS["horse_form"]),
    source=horse_form_source,
    online=True,
    tags={"family": "horse form, speed and pace, suitability"},
)

jockey_form = FeatureView(
    name="jockey_form",
    entities=[jockey],
    ttl=STATE_TTL,
    schema=feast_schema(VIEWS["jockey_form"]),
    source=jockey_form_source,
    online=True,
    tags={"family": "connections"},
)

trainer_form = FeatureView(
    name="trainer_form",
    entities=[trainer],
    ttl=STATE_TTL,
    schema=feast_schema(VIEWS["trainer_form"]),
    source=trainer_form_source,
    online=True,
    tags={"family": "connections"},
)

jockey_trainer_form = FeatureView(
    name="jockey_trainer_form",
    entities=[jockey, trainer],
    ttl=STATE_TTL,
    schema=feast_schema(VIEWS["jockey_trainer_form"]),
    source=jockey_trainer_form_source,
    online=True,
    tags={"family": "connections"},
)

horse_jockey_form = FeatureView(
    name="horse_jockey_form",
    entities=[horse, jockey],
    ttl=STATE_TTL,
    schema=feast_schema(VIEWS["horse_jockey_form"]),
    source=horse_jockey_form_source,
    online=True,
    tags={"family": "connections"},
)

track_profile = FeatureView(
    name="track_profile",
    entities=[track],
    ttl=STATE_TTL,
    schema=feast_schema(VIEWS["track_profile"]),
    source=track_profile_source,
    online=True,
    tags={"family": "draw bias, standard times"},
)
