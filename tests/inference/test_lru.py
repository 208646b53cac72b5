"""The service's bounded caches (explanations, kept predictions): :class:`Lru`."""

from __future__ import annotations

import threading

import pytest

from racecast.data.lru import Lru


def test_the_least_recently_used_item_leaves_first():
    cache = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache.put("a", 4)  # a new value for a kept key: still two items
    assert len(cache) == 2 and cache.get("a") == 4
    cache.clear()
    assert len(cache) == 0 and cache.get("c") is None


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="size must be at least 1"):
        Lru(0)


def test_threads_never_push_it_past_its_size():
    cache = Lru(16)
    seen: list[int] = []

    def work(offset: int) -> None:
        for k in range(2000):
            cache.put((offset, k), k)
            found = cache.get((offset, k - 1))
            if found is not None:
                seen.append(found)
            assert len(cache) <= 16

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 16
    assert seen  # items written by a thread are read back while others write
