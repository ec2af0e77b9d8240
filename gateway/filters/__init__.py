"""HTTP filters, one module per filter, and the chain that runs them (the router is the terminal
filter, in gateway.proxy).
"""
