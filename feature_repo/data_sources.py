"""Offline sources: the post-race state tables the Kedro `features` pipeline writes.

Each row is the state of an entity AFTER one of its races, timestamped strictly after that
race's off (``event_timestamp = off_time + post_race_delay``), so the point-in-time join
of a race at time T only sees races run before T.

Paths are absolute (resolved from this file), because Feast resolves FileSource paths
against the working directory, not the repo.
"""

from pathlib import Path

from feast import FileSource
from feast.data_format import ParquetFormat

FEATURE_DATA = Path(__file__).resolve().parent.parent / "data" / "04_feature"


def _state_source(view: str) -> FileSource:
    return FileSource(
        name=f"{view}_state",
        path=str(FEATURE_DATA / f"{view}.parquet"),
        timestamp_field="event_timestamp",
        file_format=ParquetFormat(),
        description=f"Post-race state of {view}, written by the Kedro features pipeline.",
    )


horse_form_source = _state_source("horse_form")
jockey_form_source = _state_source("jockey_form")
trainer_form_source = _state_source("trainer_form")
jockey_trainer_form_source = _state_source("jockey_trainer_form")
horse_jockey_form_source = _state_source("horse_jockey_form")
track_profile_source = _state_source("track_profile")
