"""``NodeApi``: the HTTP API served by uvicorn on the node's own event loop.

uvicorn runs as one task of the node's loop (``Server.serve`` on a socket bound here, so a
port in use is a clear error at start and port 0 works), with no signal handlers of its own
(the node's owner handles SIGINT/SIGTERM and stops the API before the node), no lifespan and
no logging configuration: its records go to the root logger like the node's own.

Why FastAPI with uvicorn: it builds the OpenAPI 3 schema from the route signatures and the
pydantic models the package already uses for its configuration, streams request and response
bodies, and embeds in a running loop. Measured on this machine (``bench/api_cost.py``), the
stack costs about 13 MiB of RSS and 0.1-0.2 s of import time, only when ``api.enabled``: this
module is imported by the commands that start an API, never by ``lumera_p2p.service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from lumera_p2p.api.app import ApiSettings, build_app
from lumera_p2p.api.auth import load_or_create_token, token_required
from lumera_p2p.api.recent_errors import RecentErrors
from lumera_p2p.config import ApiConfig
from lumera_p2p.errors import ConfigError
from lumera_p2p.service import P2P

log = logging.getLogger(__name__)

#: Seconds in-flight requests get to finish when the API stops.
SHUTDOWN_GRACE = 5
#: Connections served at once; more get 503 (a local API needs few).
MAX_CONCURRENCY = 256


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the node's owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class NodeApi:
    """The API of one running node (see the module docstring).

    ``async with NodeApi(p2p):`` or ``await api.start()`` … ``await api.stop()``; the node
    must be started first and stopped after.
    """

    def __init__(self, p2p: P2P, config: ApiConfig | None = None) -> None:
        self._p2p = p2p
        self._config = config or p2p.config.api
        self._errors = RecentErrors()
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def node(self) -> P2P:
        """The node served."""
        return self._p2p

    @property
    def port(self) -> int:
        """The port listened on (the bound one when ``api.listen`` asked for port 0)."""
        if self._socket is None:
            return self._config.port
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://host:port`` of the API."""
        host = self._config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def errors(self) -> RecentErrors:
        """The WARNING+ records logged since start (what the status page shows)."""
        return self._errors

    async def start(self) -> None:
        """Bind, then serve in a task of the running loop; ``ConfigError`` naming
        ``api.listen`` if the address cannot be bound."""
        if self._task is not None:
            return
        cfg = self._config
        token = await asyncio.to_thread(load_or_create_token, cfg.token_file)
        try:
            self._socket = _bind(cfg.host, cfg.port)
        except OSError as exc:
            raise ConfigError(
                "api.listen", f"cannot listen on {cfg.listen}: {exc.strerror or exc}"
            ) from None
        settings = ApiSettings(
            token=token,
            token_required=token_required(cfg.host, cfg.require_token),
            max_value_bytes=cfg.max_value_bytes,
            max_batch_bytes=cfg.max_batch_bytes,
            max_batch_keys=cfg.max_batch_keys,
            listen=self.url.removeprefix("http://"),
            errors=self._errors,
        )
        app = build_app(self._p2p, settings)
        server_config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            log_level="warning",  # its start and stop lines: ours say it
            access_log=False,
            http="h11",
            ws="none",
            server_header=False,
            limit_concurrency=MAX_CONCURRENCY,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        self._server = _EmbeddedServer(server_config)
        logging.getLogger().addHandler(self._errors)
        self._task = asyncio.create_task(self._server.serve([self._socket]), name="api")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        required = "a token" if settings.token_required else "no token on loopback"
        log.info("API listening on %s (%s)", self.url, required)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (a few seconds), close. Idempotent."""
        logging.getLogger().removeHandler(self._errors)
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> NodeApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
