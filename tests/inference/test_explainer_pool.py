"""The explanation pool: one per service, whichever thread asks first; close stops it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from racecast.inference.service import InferenceService
from racecast.inference.settings import ServingSettings


class _Bundle:
    feature_service = "combined_v1"
    model_version = "test"


def test_every_thread_of_a_service_gets_its_pool_until_closed() -> None:
    service = InferenceService(ServingSettings(bundle_uri="unused.pkl", allow_anonymous=True), _Bundle(), None)
    other = InferenceService(ServingSettings(bundle_uri="unused.pkl", allow_anonymous=True), _Bundle(), None)
    barrier = threading.Barrier(8)
    pools: list[ThreadPoolExecutor] = []

    def ask() -> None:
        barrier.wait()
        pools.append(service._explainers())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pools) == 8 and len({id(pool) for pool in pools}) == 1
    assert pools[0] is service._explainers()
    assert other._explainers() is not pools[0]  # no pool shared between services
    worker = pools[0].submit(lambda: threading.current_thread().name).result()
    assert worker.startswith("racecast-explain")
    service.close()
    other.close()
    assert service._explainers() is not pools[0]  # a closed pool is never reused
    service.close()
