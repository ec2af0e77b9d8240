"""The admin API (Starlette, served by uvicorn in the supervisor): /ready, /metrics, /config,
/drain.
"""
