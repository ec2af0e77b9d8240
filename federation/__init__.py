"""The federation controller: the control plane of one cluster (DESIGN.md §5). Not built yet; the
proxy's configuration API it will feed is gateway.config.
"""
