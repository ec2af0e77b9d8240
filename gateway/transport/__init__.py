"""Downstream transports: listeners, connections, HTTP/1.1 and HTTP/2 server drivers, TLS and TLS
passthrough.
"""
