"""Build hook: compile the proxy's hot path with mypyc when ISTHMUS_COMPILE=1.

The packages are plain, strictly typed Python (``mypy --strict``); mypyc, which ships with
mypy, turns the modules below into C extensions that run the same code about twice as fast.
It is how release wheels are built (``ISTHMUS_COMPILE=1 pip wheel .``) and what ``make
bench`` measures (``make compiled``). Development installs stay pure Python, so an edited
module is never shadowed by a stale extension. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import setup

# The request path: codecs, transports, the exchange, upstream pools, the hot telemetry.
# (gateway/routing/table.py is left out: mypyc cannot build its generic frozen dataclass.)
HOT_MODULES = [
    "gateway/codec/errors.py",
    "gateway/codec/messages.py",
    "gateway/codec/http1_server.py",
    "gateway/codec/http1_client.py",
    "gateway/codec/http1_wire.py",
    "gateway/codec/hpack_decode.py",
    "gateway/codec/hpack_encode.py",
    "gateway/codec/http2.py",
    "gateway/codec/tunnel.py",
    "gateway/transport/streams.py",
    "gateway/transport/http1_server.py",
    "gateway/transport/http2_server.py",
    "gateway/transport/connection.py",
    "gateway/transport/listener.py",
    "gateway/transport/passthrough.py",
    "gateway/transport/tls.py",
    "gateway/proxy/context.py",
    "gateway/proxy/exchange.py",
    "gateway/proxy/http.py",
    "gateway/proxy/local.py",
    "gateway/proxy/mirror.py",
    "gateway/proxy/tunnel.py",
    "gateway/upstream/errors.py",
    "gateway/upstream/stream.py",
    "gateway/upstream/http1.py",
    "gateway/upstream/http2.py",
    "gateway/upstream/pool.py",
    "gateway/upstream/lb.py",
    "gateway/upstream/cluster.py",
    "gateway/upstream/circuit.py",
    "gateway/upstream/outlier.py",
    "gateway/upstream/selection.py",
    "gateway/proxy/observe.py",
    "gateway/telemetry/stats.py",
    "gateway/filters/base.py",
]

ext_modules = []
if os.environ.get("ISTHMUS_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(["--strict", *HOT_MODULES], opt_level="3")

setup(ext_modules=ext_modules)
