"""Upstream clusters: endpoint pools of HTTP/1.1 and h2c connections, and the load balancers that
pick among them.
"""
