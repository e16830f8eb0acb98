"""lumi.Queue on the session's Ray: FIFO between the driver and a worker, bounded, timeouts, restarts."""

from __future__ import annotations

import queue
import time

import lumi
import numpy as np
import pytest
import ray
from lumi.errors import Busy
from lumi.storage import InvalidName, QueueEmpty, QueueFull, ValueTooLarge
from lumi.storage._persist import Folder
from store_helpers import restart


@ray.remote(num_cpus=0)
def _consumer(name: str, root: dict) -> list:
    import lumi

    q = lumi.Queue(name, create=False, **root)
    got = q.get_many(10, timeout=30)
    q.put_many([{"done": len(got)}, np.full(3, 7, np.int32)])
    return got


def test_a_worker_takes_the_drivers_items_in_order_and_answers(ray_cluster, name, root, kill_stores):
    q = lumi.Queue(name, **root)
    kill_stores.append(f"lumi-queue:local:{name}")
    q.put(np.arange(4))
    q.put_many(["two", {"three": 3}])
    got = ray.get(_consumer.remote(name, root), timeout=120)
    np.testing.assert_array_equal(got[0], np.arange(4))
    assert got[1:] == ["two", {"three": 3}]
    assert len(q) == 2 and q.get(timeout=10) == {"done": 3}
    np.testing.assert_array_equal(q.get(), np.full(3, 7, np.int32))
    assert len(q) == 0


def test_get_waits_for_a_put_from_a_worker(ray_cluster, name, kill_stores):
    q = lumi.Queue(name)
    kill_stores.append(f"lumi-queue:local:{name}")

    @ray.remote(num_cpus=0)
    def late_put():
        time.sleep(1.0)
        lumi.Queue(name, create=False).put("late")

    ref = late_put.remote()
    assert q.get(timeout=60) == "late"
    ray.get(ref)


def test_full_and_empty_are_clear_errors(ray_cluster, name, kill_stores, monkeypatch):
    q = lumi.Queue(name, maxsize=2)
    kill_stores.append(f"lumi-queue:local:{name}")
    q.put(1)
    with pytest.raises(QueueFull, match=f"Queue {name!r} is full: it holds 1 of 2 items and 2 more do not fit") as e:
        q.put_many([2, 3])  # all or nothing
    assert isinstance(e.value, Busy) and e.value.retry_after > 0
    q.put(2)
    with pytest.raises(QueueFull):
        q.put(3)
    assert len(q) == 2 and q.get_many(5) == [1, 2]
    started = time.monotonic()
    with pytest.raises(QueueEmpty, match=f"Queue {name!r} is empty after 0.[3-9] s") as e:
        q.get(timeout=0.3)
    assert isinstance(e.value, queue.Empty) and time.monotonic() - started < 10
    with pytest.raises(QueueEmpty, match="not waiting"):
        q.get(block=False)
    with pytest.raises(InvalidName, match="positive"):
        q.get_many(0)
    with pytest.raises(InvalidName, match="maxsize"):
        lumi.Queue(name, maxsize=0)
    monkeypatch.setenv("LUMI_STORE_MAX_VALUE_BYTES", "100")
    with pytest.raises(ValueTooLarge, match=f"item 1 for Queue {name!r}"):
        q.put_many([1, b"x" * 200])
    assert len(q) == 0


def test_the_queue_survives_its_actor_restarting(ray_cluster, name, root, kill_stores):
    q = lumi.Queue(name, maxsize=5, **root)
    kill_stores.append(f"lumi-queue:local:{name}")
    q.put_many(["a", "b", np.ones(2), "d"])
    assert q.get() == "a"
    Folder(root["root"], root["storage_options"]).write(f"queues/local/{name}/items/.half-written", b"junk")
    restart(f"lumi-queue:local:{name}")
    assert len(q) == 3 and q.get() == "b"
    np.testing.assert_array_equal(q.get(), np.ones(2))
    q.put_many(["e", "f", "g", "h"])  # the restarted actor kept maxsize
    with pytest.raises(QueueFull):
        q.put("i")
    assert q.get_many(10) == ["d", "e", "f", "g", "h"]
