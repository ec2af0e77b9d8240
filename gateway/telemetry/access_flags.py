"""Envoy's response flags: the short codes and the order in which Envoy prints them.

A response flag says why a request ended the way it did when the proxy, not the upstream,
decided it: ``UO`` a circuit breaker overflowed, ``NR`` no route matched, and so on. The access
log (``response_flags``) and the ``response_flags`` metric label carry them. ``-`` means none.

When a request has several flags, Envoy joins them with ``,`` in the fixed order of its flag
table (``UF,URX``, never ``URX,UF``); :func:`join_flags` does the same. A single flag needs no
call: pass the code itself.

Called by the proxy when it finishes a request, and by the access log's tests.
"""

from __future__ import annotations

from collections.abc import Iterable

NO_FLAGS = "-"

# (short code, Envoy's long name), in the order Envoy prints them.
ENVOY_FLAGS: tuple[tuple[str, str], ...] = (
    ("LH", "FailedLocalHealthCheck"),
    ("UH", "NoHealthyUpstream"),
    ("UT", "UpstreamRequestTimeout"),
    ("LR", "LocalReset"),
    ("UR", "UpstreamRemoteReset"),
    ("UF", "UpstreamConnectionFailure"),
    ("UC", "UpstreamConnectionTermination"),
    ("UO", "UpstreamOverflow"),
    ("NR", "NoRouteFound"),
    ("DI", "DelayInjected"),
    ("FI", "FaultInjected"),
    ("RL", "RateLimited"),
    ("UAEX", "UnauthorizedExternalService"),
    ("RLSE", "RateLimitServiceError"),
    ("DC", "DownstreamConnectionTermination"),
    ("URX", "UpstreamRetryLimitExceeded"),
    ("SI", "StreamIdleTimeout"),
    ("IH", "InvalidEnvoyRequestHeaders"),
    ("DPE", "DownstreamProtocolError"),
    ("UMSDR", "UpstreamMaxStreamDurationReached"),
    ("RFCF", "ResponseFromCacheFilter"),
    ("NFCF", "NoFilterConfigFound"),
    ("DT", "DurationTimeout"),
    ("UPE", "UpstreamProtocolError"),
    ("NC", "NoClusterFound"),
    ("OM", "OverloadManagerTerminated"),
    ("DF", "DnsResolutionFailed"),
    ("DO", "DropOverload"),
)
FLAG_RANK: dict[str, int] = {code: i for i, (code, _long) in enumerate(ENVOY_FLAGS)}


def join_flags(flags: Iterable[str]) -> str:
    """The ``response_flags`` value for a set of flags: Envoy's order, comma-joined, each
    once; ``-`` when there are none. ``-`` and empty strings in the input are ignored, and
    an item that is itself a joined value (``"UF,URX"``) is split. An unknown code is a
    ``ValueError`` that names it."""
    found: set[str] = set()
    for item in flags:
        if item and item != NO_FLAGS:
            found.update(item.split(","))
    if not found:
        return NO_FLAGS
    unknown = found - FLAG_RANK.keys()
    if unknown:
        raise ValueError(f"unknown response flag(s): {', '.join(sorted(unknown))}")
    return ",".join(sorted(found, key=FLAG_RANK.__getitem__))
