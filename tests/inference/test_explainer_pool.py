"""The explanation pool: one per process, whichever thread asks first."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from racecast.inference import service


def test_every_thread_gets_the_same_pool() -> None:
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
    worker = pools[0].submit(lambda: threading.current_thread().name).result()
    assert worker.startswith("racecast-explain")
