"""Talking to a running node's API from the command line: where it is, its token, its errors.

The node is found from ``--api URL`` (with ``--token-file``), or from ``--config FILE``: the
config's ``api.listen`` (a wildcard address is reached on loopback) and its ``api.token_file``
in ``data_dir``. Without either, the default ``api.listen`` is tried. Every failure is one
line: the node is not reachable (and how to start it), or the API's own one-line reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lumera_p2p.api.auth import read_token
from lumera_p2p.config import DEFAULT_API_LISTEN, ApiConfig
from lumera_p2p.errors import ApiError, RangeRefused

#: Seconds to connect; reads wait long: a store answers after its replicas do.
CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 600.0
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class NodeAddress:
    """Where a node's API is, and the token to send (if any)."""

    url: str
    token: str | None = None

    @classmethod
    def from_api_config(cls, api: ApiConfig) -> NodeAddress:
        """From a node's ``api`` section: its address and, if readable, its token file."""
        host = _WILDCARDS.get(api.host, api.host)
        base = f"http://[{host}]:{api.port}" if ":" in host else f"http://{host}:{api.port}"
        token = None
        # Unreadable: a loopback API asks for none; one that does says so with a 401.
        with contextlib.suppress(OSError, ValueError):
            token = read_token(api.token_file)
        return cls(base, token)

    @classmethod
    def default(cls) -> NodeAddress:
        """``api.listen``'s default, no token."""
        return cls(f"http://{DEFAULT_API_LISTEN}")


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.reason_phrase or f"HTTP {response.status_code}"


class ApiClient:
    """A small synchronous client of one node's API (see the module docstring)."""

    def __init__(self, node: NodeAddress, *, read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.node = node
        headers = {"Authorization": f"Bearer {node.token}"} if node.token else {}
        self._http = httpx.Client(
            base_url=node.url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT),
        )

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as exc:
            raise ApiError(
                f"cannot reach the node's API at {self.node.url}: {exc} (is the node running? "
                "start it with `lumera-p2p run --config FILE`; choose it with --api or --config)"
            ) from None
        except httpx.TimeoutException as exc:
            raise ApiError(f"the node's API at {self.node.url} timed out: {exc}") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"talking to {self.node.url} failed: {exc}") from None

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            hint = " (pass the node's token: --config, or --token-file)"
            extra = hint if response.status_code == 401 else ""
            raise ApiError(f"{response.status_code}: {_reason(response)}{extra}")
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        """``GET path`` → the decoded JSON answer."""
        with self._errors():
            clean = {k: v for k, v in params.items() if v is not None}
            return self._check(self._http.get(path, params=clean)).json()

    def post_json(self, path: str, body: Any) -> Any:
        """``POST path`` with a JSON body → the decoded JSON answer."""
        with self._errors():
            return self._check(self._http.post(path, json=body)).json()

    def put_stream(
        self, chunks: Iterable[bytes], length: int | None, datatype: int = 0
    ) -> dict[str, Any]:
        """Store a value sent as a stream of ``chunks`` (``length`` bytes, if known)."""
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        with self._errors():
            response = self._http.post(
                "/api/v1/values", content=chunks, headers=headers, params={"datatype": datatype}
            )
            result: dict[str, Any] = self._check(response).json()
            return result

    def put_file_stream(self, chunks: Iterable[bytes], length: int | None) -> dict[str, Any]:
        """Store a file sent as a stream of ``chunks`` (``POST /api/v1/files``, any size)."""
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        with self._errors():
            response = self._http.post("/api/v1/files", content=chunks, headers=headers)
            result: dict[str, Any] = self._check(response).json()
            return result

    @contextlib.contextmanager
    def get_stream(
        self, key: str, *, local: bool = False, offset: int = 0
    ) -> Iterator[httpx.Response]:
        """The streamed answer of ``GET /api/v1/values/{key}`` (checked for errors), from byte
        ``offset`` on when it is not 0 (a 206 answer; ``RangeRefused`` when it is past the
        end)."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        with (
            self._errors(),
            self._http.stream(
                "GET",
                f"/api/v1/values/{key}",
                params={"local": "true"} if local else None,
                headers=headers,
            ) as response,
        ):
            if response.status_code >= 400:
                response.read()
            if response.status_code == 416 and offset:
                raise RangeRefused(f"{key}: offset {offset} is past the end")
            yield self._check(response)


def resolve_node(api: str | None, config: Path | None, token_file: Path | None) -> NodeAddress:
    """The node to talk to, from the command's options (see the module docstring).

    Raises ``ConfigError`` for a bad config file and ``ApiError`` for an unreadable token file.
    """
    from lumera_p2p.config import load_config

    if api is not None:
        token = None
        if token_file is not None:
            try:
                token = read_token(token_file)
            except (OSError, ValueError) as exc:
                raise ApiError(f"--token-file: {exc}") from None
        return NodeAddress(api.rstrip("/"), token)
    if config is not None:
        found = NodeAddress.from_api_config(load_config(config).api)
        if token_file is not None:
            try:
                return NodeAddress(found.url, read_token(token_file))
            except (OSError, ValueError) as exc:
                raise ApiError(f"--token-file: {exc}") from None
        return found
    return NodeAddress.default()
