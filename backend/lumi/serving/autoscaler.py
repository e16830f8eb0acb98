"""Autoscaling: how many replicas an endpoint version wants, from its queue depth and latency.

Like Ray Serve and Modal: scale up at once (several replicas in one step under a burst), scale
down only after the load has stayed lower for ``scaledown_window`` seconds, down to
``min_replicas`` (zero by default: serverless). Replicas are leases on the dispatcher's workers;
on a real Ray cluster the dispatcher asks Ray's autoscaler for the leases it cannot grant
(:func:`lumi.runtime.cluster.request_cluster_resources`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    min_replicas: int = 0
    max_replicas: int = 4
    max_batch: int = 32
    scaledown_window: float = 60.0
    latency_target_s: float = 0.25  # oldest queued request older than this asks for one more replica
    batches_per_replica: int = 2


@dataclass(frozen=True)
class Load:
    queued: int  # requests waiting in the batcher
    in_flight: int  # requests in batches running on replicas
    oldest_wait: float  # seconds the oldest queued request has waited
    replicas: int  # started or starting
    starting: int  # of those, not ready yet
    idle_for: float  # seconds since a replica last took or finished a batch


class Autoscaler:
    """Decides replica counts for one endpoint version; remembers how long the load has been low."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._low_since: float | None = None

    def decide(self, load: Load, now: float) -> int:
        """Replicas wanted now, between ``min_replicas`` and ``max_replicas``."""
        p = self.policy
        want = math.ceil((load.queued + load.in_flight) / max(1, p.max_batch * p.batches_per_replica))
        if load.queued and load.oldest_wait > p.latency_target_s and not load.starting:
            want = max(want, load.replicas + 1)
        if load.idle_for < p.scaledown_window:
            want = max(want, min(1, load.replicas))  # recently used: zero only after a whole idle window
        want = max(p.min_replicas, min(p.max_replicas, want))
        if want >= load.replicas or load.idle_for >= p.scaledown_window:
            self._low_since = None
            return want
        if self._low_since is None:
            self._low_since = now
        if now - self._low_since >= p.scaledown_window:
            self._low_since = None
            return want
        return load.replicas
