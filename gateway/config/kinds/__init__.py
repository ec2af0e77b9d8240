"""The supported kinds: one module per API group or kind, and the registry the loader uses.

``gateway.config.loader`` looks a document's ``kind`` up in :data:`KINDS` to find the model
class to validate and convert it with; every class lists its accepted ``apiVersion`` values.
"""

from __future__ import annotations

from gateway.config.kinds.authorizationpolicy import AuthorizationPolicy
from gateway.config.kinds.core import EndpointSlice, Service
from gateway.config.kinds.destinationrule import DestinationRule
from gateway.config.kinds.fault import Fault
from gateway.config.kinds.gateway import Gateway, GatewayClass, ReferenceGrant
from gateway.config.kinds.grpcroute import GRPCRoute
from gateway.config.kinds.httproute import HTTPRoute
from gateway.config.kinds.meta import Object
from gateway.config.kinds.peerauthentication import PeerAuthentication
from gateway.config.kinds.proxysettings import ProxySettings
from gateway.config.kinds.ratelimit import RateLimit
from gateway.config.kinds.requestauthentication import RequestAuthentication
from gateway.config.kinds.secret import Secret
from gateway.config.kinds.tlsroute import TLSRoute

KINDS: dict[str, type[Object]] = {
    cls.kind_name: cls
    for cls in (
        Service,
        EndpointSlice,
        Secret,
        GatewayClass,
        Gateway,
        ReferenceGrant,
        HTTPRoute,
        GRPCRoute,
        TLSRoute,
        ProxySettings,
        DestinationRule,
        RateLimit,
        Fault,
        AuthorizationPolicy,
        RequestAuthentication,
        PeerAuthentication,
    )
}

__all__ = [
    "KINDS",
    "AuthorizationPolicy",
    "DestinationRule",
    "EndpointSlice",
    "Fault",
    "GRPCRoute",
    "Gateway",
    "GatewayClass",
    "HTTPRoute",
    "Object",
    "PeerAuthentication",
    "ProxySettings",
    "RateLimit",
    "ReferenceGrant",
    "RequestAuthentication",
    "Secret",
    "Service",
    "TLSRoute",
]
