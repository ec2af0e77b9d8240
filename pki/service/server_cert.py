"""The CA service's own TLS server certificate, issued by the cluster CA it serves for.

Called by :mod:`pki.service.server`. Clients (the credential manager, ``curl --cacert
bundle.pem``) verify it against the trust bundle *and* by host name, so it carries:

- the SPIFFE ID ``spiffe://<td>/isthmus/ca-service``, outside the ``/ns/<ns>/sa/<sa>`` space
  that tokens prove, so no workload can ever be issued it;
- DNS SANs: ``localhost``, the listen host when it is a name, and every ``--server-name``
  (in a cluster, the Service's names, e.g. ``isthmus-ca.isthmus-system.svc``);
- IP SANs: ``127.0.0.1``, ``::1``, and the listen address when it is a specific IP.

Workload certificates carry no DNS or IP SAN at all, which is what makes host-name checking
a sufficient test of "this is the CA service". The certificate lives 24 h (never past the CA)
and :class:`ServerCertificate` reissues it at half its lifetime; handshakes in progress keep
the old one. Pure apart from the clock.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable, Iterable

from pki.cacerts import CaCerts
from pki.keys import generate_key
from pki.spiffe import SpiffeId, parse_spiffe_id
from pki.tls_context import server_context

SERVER_CERT_TTL = datetime.timedelta(hours=24)
CA_SERVICE_PATH = "/isthmus/ca-service"
_ALPN = ("http/1.1",)
_UNSPECIFIED = {"", "0.0.0.0", "::"}

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def service_spiffe_id(trust_domain: str) -> SpiffeId:
    return parse_spiffe_id(f"spiffe://{trust_domain}{CA_SERVICE_PATH}")


def server_names(
    listen_host: str, extra: Iterable[str] = ()
) -> tuple[tuple[str, ...], tuple[IpAddress, ...]]:
    """The DNS names and IP addresses for the listen host and ``--server-name`` values."""
    dns: list[str] = ["localhost"]
    ips: list[IpAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for name in (listen_host, *extra):
        name = name.strip("[]")
        if name in _UNSPECIFIED:
            continue
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            if name.lower() not in dns:
                dns.append(name.lower())
            continue
        if ip not in ips:
            ips.append(ip)
    return tuple(dns), tuple(ips)


class ServerCertificate:
    """The current server certificate and its TLS context; :meth:`renew_due_in` says when the
    next one is due and :meth:`renew` makes it."""

    def __init__(
        self,
        ca: Callable[[], CaCerts],
        dns_names: tuple[str, ...],
        ip_addresses: tuple[IpAddress, ...],
        *,
        ttl: datetime.timedelta = SERVER_CERT_TTL,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._ca = ca
        self.dns_names = dns_names
        self.ip_addresses = ip_addresses
        self.ttl = ttl
        self._clock = clock
        self._issued_at = clock()
        self._context, self.not_after = self._issue()

    def context(self) -> ssl.SSLContext:
        return self._context

    def renew_due_in(self) -> float:
        """Seconds until half the certificate's lifetime has passed (0 if it has)."""
        half = self._issued_at + (self.not_after - self._issued_at) / 2
        return max(0.0, (half - self._clock()).total_seconds())

    def renew(self) -> None:
        self._issued_at = self._clock()
        self._context, self.not_after = self._issue()

    def _issue(self) -> tuple[ssl.SSLContext, datetime.datetime]:
        ca = self._ca()
        key = generate_key()
        leaf = ca.authority.sign_leaf(
            key.public_key(),
            service_spiffe_id(ca.authority.trust_domain),
            ttl=self.ttl,
            max_ttl=self.ttl,
            dns_names=self.dns_names,
            ip_addresses=self.ip_addresses,
            now=self._clock(),
        )
        chain = (leaf, *ca.authority.full_chain[:-1])  # the root is in the bundle
        context = server_context(chain, key, None, require_client_cert=False, alpn=_ALPN)
        return context, leaf.not_valid_after_utc
