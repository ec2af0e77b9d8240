"""Outlier detection: DestinationRule ``outlierDetection``, passive health from live traffic.

Sans-IO: the exchange reports each try's outcome with :meth:`OutlierDetector.report`, the
cluster calls :meth:`OutlierDetector.tick` every ``interval`` with the current time, and both
return whether the set of usable endpoints changed. Semantics follow Envoy, which Istio
configures:

- ``consecutive_5xx_errors``: that many 5xx answers in a row (or local failures: connect
  failure, reset, timeout) eject the endpoint at once;
- ``consecutive_gateway_errors``: the same for 502, 503, 504 and local failures only;
- an ejected endpoint returns after ``base_ejection_time`` times the number of times it has
  been ejected (capped at 300 s, Envoy's ``max_ejection_time``); every ``interval`` an
  endpoint spends not ejected takes one off that multiplier;
- at most ``max_ejection_percent`` of the endpoints are ejected at once, but one may always
  be;
- ``min_health_percent`` is the panic threshold: below it the balancer ignores health
  (``gateway.upstream.selection``).

Called by ``gateway.upstream.cluster``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.config.snapshot import OutlierDetection

MAX_EJECTION_TIME_S = 300.0
GATEWAY_ERRORS = (502, 503, 504)
LOCAL_FAILURE = 0  # a try that got no response: connect failure, reset, timeout


class Host(Protocol):
    """What outlier detection keeps on each endpoint (``EndpointPool`` has these)."""

    consecutive_5xx: int
    consecutive_gateway: int
    ejected_until: float
    ejection_multiplier: int


class OutlierDetector:
    __slots__ = ("config", "hosts")

    def __init__(self, config: OutlierDetection, hosts: Sequence[Host]) -> None:
        self.config = config
        self.hosts = tuple(hosts)

    def ejected_count(self) -> int:
        return sum(1 for h in self.hosts if h.ejected_until)

    def report(self, host: Host, status: int, now: float) -> bool:
        """Count one try's outcome (``status`` 0 for a local failure). True when the host
        was ejected by it."""
        if status and status < 500:
            host.consecutive_5xx = 0
            host.consecutive_gateway = 0
            return False
        cfg = self.config
        host.consecutive_5xx += 1
        if status in GATEWAY_ERRORS or status == LOCAL_FAILURE:
            host.consecutive_gateway += 1
        else:
            host.consecutive_gateway = 0
        n5xx, ngw = cfg.consecutive_5xx_errors, cfg.consecutive_gateway_errors
        tripped = (n5xx and host.consecutive_5xx >= n5xx) or (
            ngw and host.consecutive_gateway >= ngw
        )
        if not tripped or host.ejected_until:
            return False
        return self._eject(host, now)

    def _eject(self, host: Host, now: float) -> bool:
        ejected = self.ejected_count()
        total = len(self.hosts)
        if ejected and (ejected + 1) * 100 > self.config.max_ejection_percent * total:
            return False
        host.ejection_multiplier += 1
        duration = min(
            self.config.base_ejection_time_s * host.ejection_multiplier,
            max(MAX_EJECTION_TIME_S, self.config.base_ejection_time_s),
        )
        host.ejected_until = now + duration
        host.consecutive_5xx = 0
        host.consecutive_gateway = 0
        return True

    def tick(self, now: float) -> bool:
        """Return endpoints whose ejection ran out; True when any came back."""
        changed = False
        for h in self.hosts:
            if h.ejected_until:
                if now >= h.ejected_until:
                    h.ejected_until = 0.0
                    changed = True
            elif h.ejection_multiplier:
                h.ejection_multiplier -= 1
        return changed
