"""The signal snapshot: one build however many first requests arrive together, at most 200
bytes per pair, and label lookups that agree with a plain scan of the pairs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import query, snapshots
from api.metrics import Metrics
from api.pool import StorePool
from api.snapshots import SignalCache, build_snapshot
from benchmarks.api import synthetic_store
from pvsignal.scoring import ScoringConfig


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('snapshot')}/store.db"
    synthetic_store(url, 800, seed=2)
    return url


def _cache(pool: StorePool) -> SignalCache:
    return SignalCache(
        pool, stratify=True, scoring=ScoringConfig(), freshness_seconds=60, metrics=Metrics()
    )


def _built(url: str) -> snapshots.ScopeSnapshot:
    pool = StorePool(url, 1)
    with pool.store() as store:
        snapshot = build_snapshot(
            store, "all", token=(), stratify=True, scoring=ScoringConfig(), generation=1
        )
    pool.close()
    return snapshot


def test_concurrent_first_requests_wait_on_the_warm_up_build(url, monkeypatch):
    """The warm-up build is held until eight first requests are all waiting for a snapshot;
    then each of them gets the warm-up's snapshot, and nothing else was built."""
    requests = 8
    builds, arrived = [], threading.Semaphore(0)
    building, release = threading.Event(), threading.Event()
    real_build, real_wait = snapshots.build_snapshot, SignalCache._build_unless_current

    def held_build(*args, **kwargs):
        builds.append(threading.current_thread().name)
        building.set()
        assert release.wait(60)
        return real_build(*args, **kwargs)

    def counted_wait(self, scope):
        if not threading.current_thread().name.startswith("signals-cache"):
            assert building.wait(60)  # a request comes after the warm-up took the scope's lock
        arrived.release()
        return real_wait(self, scope)

    monkeypatch.setattr(snapshots, "build_snapshot", held_build)
    monkeypatch.setattr(SignalCache, "_build_unless_current", counted_wait)
    pool = StorePool(url, 4)
    cache = _cache(pool)
    try:
        cache.warm(["all"])
        answers: list[object] = [None] * requests

        def first_request(k: int) -> None:
            answers[k] = cache.get("all")

        threads = [threading.Thread(target=first_request, args=(k,)) for k in range(requests)]
        for thread in threads:
            thread.start()
        for _ in range(requests + 1):  # the warm-up and every request are waiting
            assert arrived.acquire(timeout=60)
        release.set()
        for thread in threads:
            thread.join(60)
        assert len(builds) == 1 and builds[0].startswith("signals-cache")
        assert answers[0] is not None and all(answer is answers[0] for answer in answers)
        cache.refresh(["all"])  # the store has not changed: nothing is rebuilt
        assert len(builds) == 1
    finally:
        cache.close()
        pool.close()


def test_at_most_200_bytes_per_pair(url):
    snapshot = _built(url)
    assert snapshot.size > 700
    assert snapshot.nbytes / snapshot.size <= 200
    assert snapshot.statistics["n_total"].strides == (0,)  # one number, seen as a column


def test_lookups_agree_with_a_scan(url):
    snapshot = _built(url)
    labels = list(
        zip(
            snapshot.products[snapshot.product_code].tolist(),
            snapshot.events[snapshot.event_code].tolist(),
            strict=True,
        )
    )
    assert labels == sorted(labels)  # held in (product, PT) code-point order
    rng = np.random.default_rng(0)
    probes = [labels[i] for i in rng.choice(len(labels), 50)]
    probes += [("P-000000", "PT-99999"), ("A", "B"), ("Z", "Z"), (labels[0][0], "")]
    for product, event in probes:
        expected = labels.index((product, event)) if (product, event) in labels else None
        assert snapshot.pair_index(product, event) == expected
        assert snapshot.label_rank(product, event) == sum(
            1 for x in labels if x <= (product, event)
        )


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 30_000),
    count=st.integers(1, 120),
    distinct_values=st.integers(1, 50_000),
    nan_share=st.sampled_from([0.0, 0.01, 0.5, 0.999]),
    seed=st.integers(0, 2**32 - 1),
)
def test_partial_selection_equals_a_full_sort(size, count, distinct_values, nan_share, seed):
    """The first ``count`` pairs by (key, NaN last, index), narrowed through a sample or not,
    are those of a full stable sort: ties, NaN, ±inf and -0.0 included."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, distinct_values, size).astype(np.float64) - distinct_values // 2
    keys[rng.random(size) < nan_share] = np.nan
    keys[rng.random(size) < 0.001] = np.inf
    keys[rng.random(size) < 0.001] = -np.inf
    keys[keys == 0] = -0.0
    index = np.sort(rng.choice(size * 3, size, replace=False))
    expected = np.lexsort((index, keys))[:count]
    np.testing.assert_array_equal(query._first(keys, index, count), expected)


def test_large_selections_are_narrowed_through_a_sample():
    keys = np.random.default_rng(1).permutation(100_000).astype(np.float64)
    narrowed = query._narrowed(keys, 100)
    assert narrowed is not None and 100 <= narrowed.size < 2_000
    np.testing.assert_array_equal(keys[query._first(keys, np.arange(keys.size), 100)], range(100))
