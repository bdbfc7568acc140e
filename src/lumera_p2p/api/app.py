"""The API's routes: a FastAPI application over one running :class:`~lumera_p2p.P2P`.

Every answer that is not a success is ``{"error": "<one line>"}`` with a 4xx (the client's
request) or 5xx (the node or the network) status; a request the schema calls invalid is a
400 naming the field, before any handler runs. FastAPI builds ``/openapi.json`` from these
routes and :mod:`lumera_p2p.api.models`; :func:`_openapi` only states those error answers.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lumera_p2p import __version__
from lumera_p2p.api import page
from lumera_p2p.api.auth import token_matches
from lumera_p2p.api.metrics import CONTENT_TYPE_LATEST, render_metrics
from lumera_p2p.api.models import (
    CURSOR_PATTERN,
    KEY_PATTERN,
    BanInfo,
    BatchRetrieveRequest,
    BatchRetrieveResult,
    BatchStoreRequest,
    BatchStoreResult,
    Datatype,
    DeleteResult,
    ErrorBody,
    Health,
    KeyPage,
    KeyState,
    LocalKey,
    PeerInfo,
    PeersResult,
    RecentError,
    RepairInfo,
    StatusResult,
    StorageInfo,
    StoreResult,
)
from lumera_p2p.api.recent_errors import RecentErrors
from lumera_p2p.api.values import RangeNotSatisfiable, ValueService, check_key
from lumera_p2p.content import key_from_bytes, key_to_bytes
from lumera_p2p.errors import (
    InvalidContentKey,
    KeyDisabled,
    LumeraP2PError,
    NotFound,
    NotRunning,
    RequestTooLarge,
    StorageFull,
    StoreFailed,
    TransportError,
    ValueMismatch,
)
from lumera_p2p.service import P2P
from lumera_p2p.stats import P2PStats

log = logging.getLogger(__name__)

#: The largest JSON body of any other request (a batch retrieve of ``max_batch_keys`` keys
#: fits in well under this per key).
_BYTES_PER_KEY = 64
_SMALL_BODY = 64 * 1024
#: The body limit of a file upload (none: it is stored a chunk at a time).
_NO_LIMIT = 1 << 62
#: The one form of HTTP range a download resumes with: from a byte offset to the end.
_RANGE = re.compile(r"bytes=(\d{1,19})-")


#: A key in a path: a base58 content key's shape (anything else is a 400 before the handler).
KeyPath = Annotated[str, Path(pattern=KEY_PATTERN, description="A base58 content key")]


@dataclass(frozen=True)
class ApiSettings:
    """What the routes need besides the node."""

    token: str
    #: Every request must carry ``token`` (a non-loopback listener, or ``api.require_token``).
    token_required: bool
    max_value_bytes: int
    max_batch_bytes: int
    max_batch_keys: int
    #: Where the API listens, as shown by ``status``.
    listen: str
    errors: RecentErrors


class BodyTooLarge(HTTPException):
    """Raised while reading a request body past its limit (FastAPI passes it on as a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over its limit of {limit} bytes")


class BodyLimit:
    """ASGI middleware: a request body may not pass the limit of its route.

    A declared ``Content-Length`` over it is refused at once; a body without one (chunked)
    is counted as it arrives and cut off at the limit, so no route ever holds more.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self._app = app
        self._limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._limit_for(scope["method"], scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                body = JSONResponse(
                    {"error": f"request body of {int(value)} bytes is over its limit of {limit}"},
                    status_code=413,
                    headers={"Connection": "close"},
                )
                await body(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self._app(scope, counted, send)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _error(status: int, message: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


#: Package errors and the status each answers with.
_STATUS: tuple[tuple[type[LumeraP2PError], int], ...] = (
    (KeyDisabled, 403),
    (NotFound, 404),
    (InvalidContentKey, 404),
    (ValueMismatch, 400),
    (RequestTooLarge, 413),
    (StorageFull, 507),
    (StoreFailed, 502),
    (TransportError, 502),
    (NotRunning, 503),
)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # routing's 404 and 405 too
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first route of the path; a path has one per method.
            headers = {"Allow": ", ".join(_allowed_methods(app, request.scope))}
        return _error(exc.status_code, exc.detail, headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _error(400, _validation_message(exc))

    async def package_error(request: Request, exc: Exception) -> Response:
        for kind, status in _STATUS:
            if isinstance(exc, kind):
                return _error(status, exc)
        log.error("%s %s failed: %s", request.method, request.url.path, _one_line(exc))
        return _error(500, exc)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s crashed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(LumeraP2PError, package_error)
    app.add_exception_handler(Exception, crash)


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every documented method some route of this path answers (a 405's ``Allow``)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ()) - {"HEAD"}
    return sorted(methods)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "The request is malformed (the field is named)",
        401: "The bearer token is missing or wrong",
        403: "The key is disabled on this node",
        404: "No such value",
        413: "Over a size limit (api.*)",
        502: "The network store did not reach enough nodes",
        503: "The node is not running",
        507: "This node's store is full (store.max_storage_bytes)",
    }
    return {c: {"model": ErrorBody, "description": described[c]} for c in codes}


def _openapi(app: FastAPI, token_required: bool) -> Callable[[], dict[str, Any]]:
    """The generated schema, with FastAPI's 422 answers stated as our 400s."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title="lumera-p2p node API",
            version=__version__,
            description="The local HTTP API of one lumera-p2p node.",
            routes=app.routes,
        )
        error_ref = {"$ref": "#/components/schemas/ErrorBody"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None or "parameters" in operation:
                    responses.setdefault(
                        "400",
                        {
                            "description": "The request is malformed (the field is named)",
                            "content": {"application/json": {"schema": error_ref}},
                        },
                    )
                if token_required and operation.get("security"):
                    responses.setdefault(
                        "401",
                        {
                            "description": "The bearer token is missing or wrong",
                            "content": {"application/json": {"schema": error_ref}},
                        },
                    )
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
        return schema

    return build


def build_app(p2p: P2P, settings: ApiSettings) -> FastAPI:
    """The API of ``p2p`` (which must be running for most routes to answer)."""
    values = ValueService(p2p, settings.max_value_bytes)
    small = _SMALL_BODY + settings.max_batch_keys * _BYTES_PER_KEY

    def limit_for(method: str, path: str) -> int:
        if method in ("POST", "PUT") and path == "/api/v1/values":
            return settings.max_value_bytes
        if method == "POST" and path == "/api/v1/files":
            return _NO_LIMIT  # streamed into chunks: any size, bounded memory
        if path == "/api/v1/batch/store":
            return settings.max_batch_bytes
        return small

    guarded: list[Any] = []
    if settings.token_required:
        bearer = HTTPBearer(auto_error=False, description="The token in the node's api.token_file")

        # A default, not Annotated: the annotation is a string here, and ``bearer`` is local.
        async def check_token(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> None:
            if credentials is None or not token_matches(credentials.credentials, settings.token):
                raise HTTPException(
                    401,
                    "missing or wrong bearer token (the node's api.token_file)",
                    headers={"WWW-Authenticate": "Bearer"},
                )

        guarded = [Depends(check_token)]

    app = FastAPI(
        title="lumera-p2p node API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.openapi = _openapi(app, settings.token_required)  # type: ignore[method-assign]
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit_for=limit_for)

    # --- values ------------------------------------------------------------------------

    @app.post(
        "/api/v1/values",
        status_code=201,
        response_model=StoreResult,
        dependencies=guarded,
        responses=_responses(400, 413, 503, 507),
        summary="Store a value (the request body, streamed)",
        tags=["values"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary", "minLength": 1}
                    }
                },
            }
        },
    )
    async def store_value(
        request: Request,
        datatype: Annotated[Datatype, Query(description="The value's datatype (0: data)")] = 0,
    ) -> StoreResult:
        length_text = request.headers.get("content-length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        if length == 0:
            raise HTTPException(400, "empty body: a value has at least one byte")

        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                if chunk:
                    yield chunk

        result = await values.put(body(), length, datatype)
        if result.size == 0:
            raise HTTPException(400, "empty body: a value has at least one byte")
        return result

    @app.post(
        "/api/v1/files",
        status_code=201,
        response_model=StoreResult,
        dependencies=guarded,
        responses=_responses(400, 502, 503, 507),
        summary="Store a file of any size (the request body, streamed into chunks)",
        tags=["values"],
        openapi_extra={
            # Not required: no body is the empty file, as a file of no bytes is.
            "requestBody": {
                "required": False,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def store_file(request: Request) -> StoreResult:
        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                if chunk:
                    yield chunk

        return await values.put_file(body())

    @app.get(
        "/api/v1/values/{key}",
        dependencies=guarded,
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The value, or the file its key names (streamed); "
                "X-Content-Key is the base58 BLAKE3 of the whole body, X-Value-Kind "
                "value or file",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            206: {
                "description": "From the offset of a 'Range: bytes=N-' header on (resuming)",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            416: {"description": "The range starts past the end", "model": ErrorBody},
            **_responses(400, 403, 404, 503),
        },
        summary="Get a value or a file (here, else from the network), streamed",
        tags=["values"],
    )
    async def get_value(
        key: KeyPath,
        local: Annotated[bool, Query(description="Only this node's copy")] = False,
        range_header: Annotated[
            str | None,
            Header(
                alias="Range",
                description="bytes=N- to start at byte N (other forms are ignored)",
            ),
        ] = None,
    ) -> Response:
        wanted = _RANGE.fullmatch(range_header.strip()) if range_header else None
        offset = int(wanted.group(1)) if wanted else 0
        try:
            found = await values.open(key, local_only=local, offset=offset)
        except RangeNotSatisfiable as exc:
            return _error(416, exc, {"Content-Range": f"bytes */{exc.size}"})
        headers = {
            "Content-Length": str(found.size - found.offset),
            "X-Content-Key": found.content_key,
            "X-Value-Kind": found.kind,
            "Accept-Ranges": "bytes",
        }
        status = 200
        if wanted is not None and found.size > 0:
            status = 206
            headers["Content-Range"] = f"bytes {found.offset}-{found.size - 1}/{found.size}"
        return StreamingResponse(
            found.chunks,
            status_code=status,
            media_type="application/octet-stream",
            headers=headers,
        )

    @app.delete(
        "/api/v1/values/{key}",
        response_model=DeleteResult,
        dependencies=guarded,
        responses=_responses(400, 404, 503),
        summary="Delete this node's copy of a value (other nodes keep theirs)",
        tags=["values"],
    )
    async def delete_value(key: KeyPath) -> DeleteResult:
        check_key(key)
        return DeleteResult(key=key, deleted=await p2p.delete(key))

    @app.post(
        "/api/v1/values/{key}/disable",
        response_model=KeyState,
        dependencies=guarded,
        responses=_responses(400, 404, 503),
        summary="Refuse single-key retrieval of a key here for a while",
        tags=["values"],
    )
    async def disable_key(key: KeyPath) -> KeyState:
        check_key(key)
        await p2p.disable_key(key)
        return KeyState(key=key, disabled=True)

    @app.post(
        "/api/v1/values/{key}/enable",
        response_model=KeyState,
        dependencies=guarded,
        responses=_responses(400, 404, 503),
        summary="Undo disable",
        tags=["values"],
    )
    async def enable_key(key: KeyPath) -> KeyState:
        check_key(key)
        await p2p.enable_key(key)
        return KeyState(key=key, disabled=False)

    # --- batches -----------------------------------------------------------------------

    @app.post(
        "/api/v1/batch/store",
        response_model=BatchStoreResult,
        dependencies=guarded,
        responses=_responses(400, 413, 502, 503, 507),
        summary="Store many values in one batch (base64 in JSON)",
        tags=["batch"],
    )
    async def batch_store(body: BatchStoreRequest) -> BatchStoreResult:
        raw = [base64.b64decode(v, validate=True) for v in body.values]
        if not all(raw):
            raise HTTPException(400, "values: a value has at least one byte")
        report = await p2p.store_batch(raw, body.datatype, body.task_id)
        return BatchStoreResult(
            keys=[key_from_bytes(k) for k in report.keys],
            requests=report.requests,
            succeeded=report.succeeded,
            refused_not_eligible=report.refused_not_eligible,
            success_rate=report.success_rate,
        )

    @app.post(
        "/api/v1/batch/retrieve",
        response_model=BatchRetrieveResult,
        dependencies=guarded,
        responses=_responses(400, 413, 503),
        summary="Get many values (base64 in JSON), stopping once `required` are found",
        tags=["batch"],
    )
    async def batch_retrieve(body: BatchRetrieveRequest) -> BatchRetrieveResult:
        if len(body.keys) > settings.max_batch_keys:
            raise RequestTooLarge(
                f"keys: at most {settings.max_batch_keys} per request (api.max_batch_keys)"
            )
        usable: list[str] = []
        for key in dict.fromkeys(body.keys):
            try:
                key_to_bytes(key)
            except InvalidContentKey:
                continue  # names no value: reported missing
            usable.append(key)
        found: dict[str, bytes] = {}
        if usable:
            required = len(usable) if body.required is None else min(body.required, len(usable))
            try:
                found = await p2p.batch_retrieve(usable, required, body.tx_id, body.local_only)
            except NotFound as exc:
                found = getattr(exc, "found", {})
        return BatchRetrieveResult(
            values={k: base64.b64encode(v).decode("ascii") for k, v in found.items()},
            found=len(found),
            missing=[k for k in dict.fromkeys(body.keys) if k not in found],
        )

    # --- this node ---------------------------------------------------------------------

    @app.get(
        "/api/v1/keys",
        response_model=KeyPage,
        dependencies=guarded,
        responses=_responses(400, 503),
        summary="Keys stored here, oldest first, a page at a time",
        tags=["node"],
    )
    async def local_keys(
        limit: Annotated[int, Query(ge=1, le=1000, description="Keys per page")] = 100,
        cursor: Annotated[
            str | None,
            Query(pattern=CURSOR_PATTERN, description="The previous page's `next`"),
        ] = None,
    ) -> KeyPage:
        after = None
        if cursor is not None:
            created, _, key = cursor.rpartition("~")
            after = (created, key)
        rows = await p2p.local_keys_page(limit, after)
        keys = [
            LocalKey(key=key_from_bytes(r.key), size=r.size, created_at=r.created_at) for r in rows
        ]
        last = keys[-1] if len(keys) == limit else None
        return KeyPage(keys=keys, next=f"{last.created_at}~{last.key}" if last else None)

    @app.get(
        "/api/v1/peers",
        response_model=PeersResult,
        dependencies=guarded,
        summary="The routing table and the ban list",
        tags=["node"],
    )
    async def peers() -> PeersResult:
        node = p2p.node
        contacts = p2p.peers()
        now = node.now()
        return PeersResult(
            count=len(contacts),
            peers=[
                PeerInfo(
                    address=c.address,
                    ip=c.ip,
                    port=c.port,
                    version=c.version,
                    banned=node.is_banned(c.hashed_id),
                )
                for c in contacts
            ],
            bans=[
                BanInfo(
                    address=b.label,
                    count=b.count,
                    banned=node.is_banned(b.key),
                    age_seconds=max(0.0, now - b.first_failure),
                )
                for b in node.bans()
            ],
        )

    @app.get(
        "/api/v1/stats",
        response_model=P2PStats,
        dependencies=guarded,
        summary="Every counter of the node (P2P.stats())",
        tags=["node"],
    )
    async def stats() -> P2PStats:
        return await p2p.stats()

    @app.get(
        "/api/v1/status",
        response_model=StatusResult,
        dependencies=guarded,
        summary="The node at a glance: peers, storage, repair backlog, recent errors",
        tags=["node"],
    )
    async def status() -> StatusResult:
        return await _status(p2p, settings)

    # --- probes and metrics ------------------------------------------------------------

    @app.get("/healthz", response_model=Health, summary="Liveness", tags=["probes"])
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Not ready, and why"}},
        summary="Readiness: running, with at least one peer",
        tags=["probes"],
    )
    async def readyz() -> Response:
        reason = _unready_reason(p2p)
        if reason:
            return JSONResponse(
                Health(status="unavailable", reason=reason).model_dump(), status_code=503
            )
        return JSONResponse(Health(status="ok").model_dump())

    @app.get(
        "/metrics",
        dependencies=guarded,
        response_class=Response,
        responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
        summary="Prometheus metrics",
        tags=["probes"],
    )
    async def metrics() -> Response:
        body = render_metrics(await p2p.stats())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    page.install(app)
    return app


def _unready_reason(p2p: P2P) -> str:
    if not p2p.running:
        return "the node is not running"
    if p2p.node.peer_count == 0:
        return "no peers yet"
    return ""


async def _status(p2p: P2P, settings: ApiSettings) -> StatusResult:
    s = await p2p.stats()
    store = s.store
    disk = s.disk
    return StatusResult(
        address=s.address,
        version=s.version,
        p2p_listen=s.listen,
        api_listen=settings.listen,
        running=p2p.running,
        ready=not _unready_reason(p2p),
        uptime_seconds=s.uptime,
        peers=s.peers,
        banned=s.banned,
        registry_supernodes=s.registry_routing,
        storage=StorageInfo(
            records=store.records,
            value_bytes=store.data_bytes,
            db_file_bytes=store.db_file_bytes,
            max_storage_bytes=p2p.config.store.max_storage_bytes,
            disabled_keys=store.disabled_keys,
            disk_total_bytes=disk.total if disk else None,
            disk_free_bytes=disk.free if disk else None,
        ),
        repair=RepairInfo(
            pending_keys=store.replication_keys, dropped_keys=store.replication_keys_dropped
        ),
        recent_errors=[RecentError.of(e) for e in settings.errors.snapshot()],
    )
