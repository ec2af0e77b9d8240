"""Sans-IO protocol code: HTTP/1.1 on httptools, HTTP/2 on h2, HPACK, TLS ClientHello parsing.
Bytes in, calls out; no asyncio.
"""
