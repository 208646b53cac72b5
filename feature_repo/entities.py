"""Entities: the join keys of racecast's feature views."""

from feast import Entity, ValueType

horse = Entity(
    name="horse",
    join_keys=["horse_id"],
    value_type=ValueType.STRING,
    description="A horse, by the source's own stable horse id.",
)

jockey = Entity(
    name="jockey",
    join_keys=["jockey_id"],
    value_type=ValueType.STRING,
    description="A jockey, by the source's own stable jockey id.",
)

trainer = Entity(
    name="trainer",
    join_keys=["trainer_id"],
    value_type=ValueType.STRING,
    description="A trainer, by the source's own stable trainer id.",
)

track = Entity(
    name="track",
    join_keys=["track_key"],
    value_type=ValueType.STRING,
    description="A course configuration: course|surface|distance_m (e.g. 'ST|turf|1200').",
)
