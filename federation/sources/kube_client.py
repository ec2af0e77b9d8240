"""The official ``kubernetes`` client, configured and mapped to the kinds we read.

:func:`api_client` builds the ``ApiClient`` from ``--kubeconfig FILE`` or the in-cluster
service account (the controller calls it); :class:`KubeCalls` makes the list and watch calls
of one :class:`~federation.sources.kinds.SourceKind`, always across all namespaces, through
the ``ApiClient``'s own request path (``param_serialize`` then ``call_api``: its
configuration, authentication, query encoding and urllib3 pool), on the paths the typed APIs
(``CoreV1Api``, ``DiscoveryV1Api``, ``CustomObjectsApi``) would use, and without their
deserialisation: we parse the JSON ourselves (no model objects, which would cost time and
memory for thousands of objects) and read watch streams line by line. Importing the typed
APIs alone costs about 0.6 s of CPU per controller (they build hundreds of pydantic model
classes), which three controllers sharing a core pay at every start. Used by
``federation.sources.kube_watch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from kubernetes import client
from kubernetes import config as _config
from kubernetes.client.exceptions import ApiException

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


# The typed APIs' names of the query parameters we pass, and their wire names, in the
# order the typed APIs put them in the query.
_QUERY = {
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "_continue": "continue",
    "field_selector": "fieldSelector",
    "limit": "limit",
    "resource_version": "resourceVersion",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
}
_CORE_PATHS = {"Service": "services", "Pod": "pods", "Secret": "secrets", "Node": "nodes"}
# What the typed list calls send: JSON first, and JSON lines when watching.
_ACCEPT = ["application/json", "application/json;stream=watch"]


def resource_path(kind: SourceKind, api_version: str) -> str:
    """The all-namespaces collection path of ``kind`` at ``api_version``."""
    if api_version == "v1":
        plural = _CORE_PATHS.get(kind.kind)
        if plural is None:
            raise ValueError(f"no core v1 call for {kind.kind}")
        return f"/api/v1/{plural}"
    group, sep, version = api_version.partition("/")
    if not sep or not group or not version:
        raise ValueError(f"not a group/version: {api_version!r}")
    return f"/apis/{group}/{version}/{kind.plural}"


class KubeCalls:
    """List and watch calls for a kind at one of its apiVersions (thread-safe)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def call(self, kind: SourceKind, api_version: str, **params: Any) -> Any:
        """The raw urllib3 response of a list (or, with ``watch=True``, a watch); raises
        ``ApiException`` on an HTTP error status, as the typed calls do with
        ``_preload_content=False``."""
        timeout = params.pop("_request_timeout", None)
        if kind.field_selector:
            params["field_selector"] = kind.field_selector
        unknown = params.keys() - _QUERY.keys()
        if unknown:
            raise TypeError(f"unexpected query parameters {sorted(unknown)}")
        query = [(wire, params[n]) for n, wire in _QUERY.items() if params.get(n) is not None]
        api = self.api
        request = api.param_serialize(
            method="GET",
            resource_path=resource_path(kind, api_version),
            query_params=query,
            header_params={"Accept": api.select_header_accept(_ACCEPT)},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

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
