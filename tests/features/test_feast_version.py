"""Every workaround of Feast internals refuses a Feast release it was not written for."""

from __future__ import annotations

import feast
import pytest

from racecast.features import engines
from racecast.features.offline_store import AsofDuckDBOfflineStore
from racecast.features.online_read import OnlineReader


@pytest.fixture
def other_feast(monkeypatch):
    """Feast reporting a release the workarounds were not checked against."""
    monkeypatch.setattr(feast, "__version__", "0.50.0")


def test_the_pinned_release_passes():
    assert feast.__version__ == engines.FEAST_VERSION
    engines.check_feast_version()


def test_another_release_fails_naming_both_versions(other_feast):
    with pytest.raises(RuntimeError, match=r"feast 0\.49\.0, found feast 0\.50\.0"):
        engines.check_feast_version()


def test_the_asof_offline_store_checks_before_touching_feast(other_feast, monkeypatch):
    from feast.infra.offline_stores import ibis as feast_ibis

    original = feast_ibis.point_in_time_join
    with pytest.raises(RuntimeError, match="0.50.0"):
        AsofDuckDBOfflineStore.get_historical_features()
    assert feast_ibis.point_in_time_join is original  # nothing swapped


def test_the_online_reader_checks_before_reading(other_feast):
    with pytest.raises(RuntimeError, match="0.50.0"):
        OnlineReader(store=None, service_name="fundamental_v1")


def test_the_asof_spark_store_checks_before_touching_feast(other_feast):
    pytest.importorskip("pyspark", reason='the Spark store needs pyspark (pip install -e ".[scale]")')
    from feast.infra.offline_stores.contrib.spark_offline_store import spark as feast_spark

    from racecast.features.offline_store_spark import AsofSparkOfflineStore

    original = feast_spark.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN
    with pytest.raises(RuntimeError, match="0.50.0"):
        AsofSparkOfflineStore.get_historical_features()
    assert feast_spark.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN is original  # nothing swapped


def test_a_swapped_attribute_is_restored_after_an_error_and_swaps_do_not_interleave():
    import threading
    import types

    module = types.SimpleNamespace(join="feast's")
    with pytest.raises(ValueError, match="inside"):
        with engines.feast_attribute_swapped(module, "join", "racecast's"):
            assert module.join == "racecast's"
            raise ValueError("inside")
    assert module.join == "feast's"

    inside, release, seen = threading.Event(), threading.Event(), []

    def first():
        with engines.feast_attribute_swapped(module, "join", "first"):
            inside.set()
            release.wait(5)
            seen.append(module.join)

    def second():
        with engines.feast_attribute_swapped(module, "join", "second"):
            seen.append(module.join)

    a = threading.Thread(target=first)
    a.start()
    inside.wait(5)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.2)
    assert b.is_alive()  # the second swap waits for the first block to end
    release.set()
    a.join(5)
    b.join(5)
    assert seen == ["first", "second"] and module.join == "feast's"
