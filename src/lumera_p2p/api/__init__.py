"""The node's local HTTP API, Prometheus metrics and status page.

Served on the node's own event loop by :class:`~lumera_p2p.api.server.NodeApi` (``lumera-p2p
run`` and ``localnet`` start it when ``api.enabled``). The web stack (FastAPI, Starlette,
uvicorn) is imported only by :mod:`lumera_p2p.api.server` and :mod:`lumera_p2p.api.app`, so a
node without the API never loads it.

* :mod:`.auth`: the bearer token file and when it is asked for;
* :mod:`.models`: request and response bodies (the OpenAPI schema is generated from them);
* :mod:`.values`: what storing and reading a value means (the seam where chunked files come in);
* :mod:`.app`: the routes; :mod:`.metrics`: ``/metrics``; :mod:`.page`: the status page;
* :mod:`.recent_errors`: the WARNING+ log records the status page shows.
"""
