"""The autoscaling policy: up at once under a burst, down only after the scaledown window, to zero."""

from __future__ import annotations

from lumi.serving.autoscaler import Autoscaler, Load, Policy


def load(queued=0, in_flight=0, oldest=0.0, replicas=0, starting=0, idle=0.0) -> Load:
    return Load(queued, in_flight, oldest, replicas, starting, idle)


def test_scales_up_several_at_once_under_a_burst():
    a = Autoscaler(Policy(min_replicas=0, max_replicas=8, max_batch=8, batches_per_replica=2))
    assert a.decide(load(queued=100, replicas=1), 0.0) == 7
    assert a.decide(load(queued=1000, replicas=1), 0.0) == 8  # capped at max_replicas


def test_latency_adds_a_replica_unless_one_is_starting():
    a = Autoscaler(Policy(max_replicas=4, max_batch=64, latency_target_s=0.1))
    assert a.decide(load(queued=2, oldest=0.5, replicas=1), 0.0) == 2
    assert a.decide(load(queued=2, oldest=0.5, replicas=2, starting=1), 0.0) == 2


def test_scales_down_only_after_the_window_and_to_zero_when_idle():
    a = Autoscaler(Policy(min_replicas=0, max_replicas=4, max_batch=8, scaledown_window=2.0))
    assert a.decide(load(in_flight=1, replicas=3, idle=0.0), 10.0) == 3  # low load: hold
    assert a.decide(load(in_flight=1, replicas=3, idle=0.0), 11.0) == 3
    assert a.decide(load(in_flight=1, replicas=3, idle=0.0), 12.1) == 1  # low for a whole window
    assert a.decide(load(replicas=1, idle=1.0), 13.0) == 1  # used a second ago: keep one
    assert a.decide(load(replicas=1, idle=2.5), 14.0) == 0  # idle for the window: zero


def test_min_replicas_are_kept():
    a = Autoscaler(Policy(min_replicas=2, max_replicas=4, scaledown_window=0.0))
    assert a.decide(load(replicas=3, idle=100), 0.0) == 2
    assert a.decide(load(replicas=0, idle=100), 0.0) == 2
