"""The official ``kubernetes`` client, configured and mapped to the kinds we read.

:func:`api_client` builds the ``ApiClient`` from ``--kubeconfig FILE`` or the in-cluster
service account (the controller calls it); :class:`KubeCalls` makes the list and watch calls
of one :class:`~federation.sources.kinds.SourceKind` through the typed APIs (``CoreV1Api``,
``DiscoveryV1Api``) or ``CustomObjectsApi`` for the CRDs, always across all namespaces and
always with ``_preload_content=False``: we parse the JSON ourselves (no model objects, which
would cost time and memory for thousands of objects) and read watch streams line by line.
Used by ``federation.sources.kube_watch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from kubernetes import client
from kubernetes import config as _config

from federation.sources.kinds import SourceKind

Obj = dict[str, Any]
config: Any = _config  # its loaders are untyped


def api_client(
    kubeconfig: str | None = None,
    *,
    in_cluster: bool = False,
    context: str | None = None,
    pool_size: int = 32,
) -> Any:
    """An ``ApiClient`` for a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``)
    or, with ``in_cluster``, the pod's service account. ``pool_size`` must cover one
    connection per watched kind, since every watch holds one open."""
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeCalls:
    """List and watch calls for a kind at one of its apiVersions (thread-safe)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def call(self, kind: SourceKind, api_version: str, **params: Any) -> Any:
        """The raw urllib3 response of a list (or, with ``watch=True``, a watch); raises
        ``ApiException`` on an HTTP error status."""
        params["_preload_content"] = False
        if kind.field_selector:
            params["field_selector"] = kind.field_selector
        if api_version == "v1":
            methods: dict[str, Any] = {
                "Service": self.core.list_service_for_all_namespaces,
                "Pod": self.core.list_pod_for_all_namespaces,
                "Secret": self.core.list_secret_for_all_namespaces,
                "Node": self.core.list_node,
            }
            method = methods.get(kind.kind)
            if method is None:
                raise ValueError(f"no core v1 call for {kind.kind}")
            return method(**params)
        if api_version == "discovery.k8s.io/v1" and kind.kind == "EndpointSlice":
            return self.discovery.list_endpoint_slice_for_all_namespaces(**params)
        group, _, version = api_version.partition("/")
        return self.custom.list_cluster_custom_object(group, version, kind.plural, **params)

    def list_page(
        self,
        kind: SourceKind,
        api_version: str,
        *,
        limit: int,
        continue_token: str | None,
        timeout: tuple[float, float],
        track: Callable[[Any], AbstractContextManager[None]] | None = None,
    ) -> Obj:
        """One page of a list, as the decoded ``<Kind>List``; ``track`` wraps the reading of
        the body (so that a stop can cut it)."""
        params: dict[str, Any] = {"limit": limit, "_request_timeout": timeout}
        if continue_token:
            params["_continue"] = continue_token
        response = self.call(kind, api_version, **params)
        try:
            with track(response) if track is not None else nullcontext():
                body = json.loads(response.data)
        finally:
            response.release_conn()
        if not isinstance(body, dict):
            raise ValueError(f"a list of {kind.kind} is not a JSON object")
        return body
