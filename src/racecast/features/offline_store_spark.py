"""Spark offline store with a sort-based as-of point-in-time join.

Feast 0.49's Spark store (``MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN``) joins every entity
row to *every* earlier state row of its entity within the view's TTL and then keeps the
latest with a window: an entity with k times the history costs k^2, and racecast's views
(10-year TTL; jockeys, trainers, tracks with thousands of rows each) grow quadratically.
This store renders another query for the same retrieval. Per view:

1. the distinct probes (join keys, entity timestamp) of the entity rows are unioned with
   the view's state rows (join keys, event timestamp[, created timestamp], features
   packed in one struct, which is null only on probe rows);
2. partitioned by the join keys and ordered by timestamp -- state rows before probes at
   equal timestamps (Feast's ``event_timestamp <= entity timestamp``), then by created
   timestamp -- ``last(struct, ignore nulls)`` over the rows up to the current one carries
   the latest state row forward to each probe (a state row whose features are all null
   still wins: its struct is not null);
3. features whose row is older than the TTL (``event_timestamp < entity timestamp -
   ttl``) are nulled, and the probes are left-joined back onto the entity rows.

One sort per view instead of a join per history pair: n log n in the rows. Answers,
columns and types are those of Feast's template (the same source filters, ``<=`` rule,
TTL bound, created-timestamp order and ``full_feature_names`` names), with one
difference: where a view holds two rows of one entity with equal event and created
timestamps, Feast's template returns that entity row once per duplicate, this store once
(with one of them, as the ASOF DuckDB store does). Sources, materialization and retrieval
jobs are Feast's Spark store, unchanged.

A workaround of Feast internals (listed in :mod:`racecast.features.engines`, which holds
the version check). Select it in ``feature_store.scale.yaml``::

    offline_store:
      type: racecast.features.offline_store_spark.AsofSparkOfflineStore
"""

from __future__ import annotations

from typing import Any

from feast.infra.offline_stores.contrib.spark_offline_store import spark as feast_spark
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
)

from racecast.features.engines import SPARK_ASOF_TYPE, feast_attribute_swapped

#: Feast's template context (``offline_utils.build_point_in_time_query``): ``featureviews``
#: (name, ttl seconds, entities, features, field_mapping, timestamp_field,
#: created_timestamp_column, table_subquery, entity_selections, min/max_event_timestamp,
#: date_partition_column, min/max_date_partition), ``left_table_query_string``,
#: ``entity_df_event_timestamp_col``, ``full_feature_names`` and
#: ``final_output_feature_names``. Statements are separated by ``---EOS---`` as in Feast's.
ASOF_POINT_IN_TIME_JOIN = """
CREATE OR REPLACE TEMPORARY VIEW entity_dataframe AS (
    SELECT *, {{ entity_df_event_timestamp_col }} AS entity_timestamp
    FROM {{ left_table_query_string }}
);

---EOS---

{% for featureview in featureviews %}
{% set fv = featureview.name %}
CREATE OR REPLACE TEMPORARY VIEW {{ fv }}__cleaned AS (
    WITH {{ fv }}__subquery AS (
        SELECT
            {{ featureview.timestamp_field }} AS event_timestamp,
            {{ featureview.created_timestamp_column ~ ' AS created_timestamp,' if featureview.created_timestamp_column else '' }}
            {{ featureview.entity_selections | join(', ') }}{% if featureview.entity_selections %},{% endif %}
            {% for feature in featureview.features %}
                {{ feature }} AS {{ fv }}__f{{ loop.index0 }}{% if not loop.last %},{% endif %}
            {% endfor %}
        FROM {{ featureview.table_subquery }}
        WHERE {{ featureview.timestamp_field }} <= '{{ featureview.max_event_timestamp }}'
        {% if featureview.date_partition_column != "" and featureview.date_partition_column is not none %}
        AND {{ featureview.date_partition_column }} <= '{{ featureview.max_date_partition }}'
        {% endif %}
        {% if featureview.ttl != 0 %}
        AND {{ featureview.timestamp_field }} >= '{{ featureview.min_event_timestamp }}'
        {% if featureview.date_partition_column != "" and featureview.date_partition_column is not none %}
        AND {{ featureview.date_partition_column }} >= '{{ featureview.min_date_partition }}'
        {% endif %}
        {% endif %}
    ),

    {{ fv }}__union AS (
        SELECT
            {% for entity in featureview.entities %}{{ entity }}, {% endfor %}
            event_timestamp AS {{ fv }}__ts,
            0 AS {{ fv }}__probe,
            {% if featureview.created_timestamp_column %}created_timestamp AS {{ fv }}__created,{% endif %}
            NAMED_STRUCT(
                'event_timestamp', event_timestamp
                {% for feature in featureview.features %}, 'f{{ loop.index0 }}', {{ fv }}__f{{ loop.index0 }}{% endfor %}
            ) AS {{ fv }}__row
        FROM {{ fv }}__subquery
        UNION ALL
        SELECT
            {% for entity in featureview.entities %}{{ entity }}, {% endfor %}
            entity_timestamp AS {{ fv }}__ts,
            1 AS {{ fv }}__probe,
            {% if featureview.created_timestamp_column %}CAST(NULL AS TIMESTAMP) AS {{ fv }}__created,{% endif %}
            NULL AS {{ fv }}__row
        FROM (
            SELECT DISTINCT
                {% for entity in featureview.entities %}{{ entity }}, {% endfor %}
                entity_timestamp
            FROM entity_dataframe
        )
    ),

    {{ fv }}__carried AS (
        SELECT
            {% for entity in featureview.entities %}{{ entity }}, {% endfor %}
            {{ fv }}__ts,
            {{ fv }}__probe,
            LAST({{ fv }}__row, TRUE) OVER (
                {% if featureview.entities %}PARTITION BY {{ featureview.entities | join(', ') }}{% endif %}
                ORDER BY {{ fv }}__ts, {{ fv }}__probe{% if featureview.created_timestamp_column %}, {{ fv }}__created{% endif %}
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS {{ fv }}__row
        FROM {{ fv }}__union
    )

    SELECT
        {% for entity in featureview.entities %}{{ entity }} AS {{ fv }}__k{{ loop.index0 }}, {% endfor %}
        {{ fv }}__ts AS {{ fv }}__entity_timestamp
        {% for feature in featureview.features %}
            {% set name = featureview.field_mapping.get(feature, feature) %}
            {% if featureview.ttl != 0 %}
            ,CASE WHEN {{ fv }}__row.event_timestamp >= {{ fv }}__ts - {{ featureview.ttl }} * interval '1' second
                THEN {{ fv }}__row.f{{ loop.index0 }} END
            {% else %}
            ,{{ fv }}__row.f{{ loop.index0 }}
            {% endif %}
            AS {% if full_feature_names %}{{ fv }}__{{ name }}{% else %}{{ name }}{% endif %}
        {% endfor %}
    FROM {{ fv }}__carried
    WHERE {{ fv }}__probe = 1
)

---EOS---

{% endfor %}

SELECT {{ final_output_feature_names | join(', ') }}
FROM entity_dataframe
{% for featureview in featureviews %}
{% set fv = featureview.name %}
LEFT JOIN {{ fv }}__cleaned
ON {% for entity in featureview.entities %}entity_dataframe.{{ entity }} = {{ fv }}__cleaned.{{ fv }}__k{{ loop.index0 }} AND {% endfor %}entity_dataframe.entity_timestamp = {{ fv }}__cleaned.{{ fv }}__entity_timestamp
{% endfor %}
"""


class AsofSparkOfflineStoreConfig(SparkOfflineStoreConfig):
    """Same options as Feast's Spark store."""

    type: str = SPARK_ASOF_TYPE


class AsofSparkOfflineStore(SparkOfflineStore):
    """Feast's Spark offline store, with the sort-based as-of point-in-time join."""

    @staticmethod
    def get_historical_features(*args: Any, **kwargs: Any):  # noqa: ANN205 - Feast's signature
        """Feast's Spark historical retrieval, rendered with ``ASOF_POINT_IN_TIME_JOIN``.

        Feast's method renders the module attribute ``MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN``
        of its ``spark`` module; it is swapped while the method runs (the query is rendered
        there and run later by the returned job). A Feast internal
        (:func:`~racecast.features.engines.feast_attribute_swapped`: any other Feast release
        than the one it was written for is refused).
        """
        with feast_attribute_swapped(
            feast_spark, "MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN", ASOF_POINT_IN_TIME_JOIN
        ):
            return SparkOfflineStore.get_historical_features(*args, **kwargs)
