"""The status page at ``/``: plain HTML, a stylesheet and a little vanilla JavaScript.

No build step: the three files in ``static/`` are served as they are. The page carries no
secret; its script asks the API (with the token from ``#token=…`` in the address, or typed in,
when the node asks for one) for the status and peers every few seconds, and drives the put/get
form.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

#: The files served, and their media types: nothing else under ``static/`` is reachable.
STATIC_FILES = {
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
}
#: Scripts and styles from this origin only; no inline script, no framing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return (resources.files("lumera_p2p.api") / "static" / name).read_bytes()


def install(app: FastAPI) -> None:
    """Add ``/`` and ``/static/{name}`` (left out of the OpenAPI schema: not API)."""
    files = {name: _read(name) for name in ("index.html", *STATIC_FILES)}

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(
            files["index.html"], media_type="text/html; charset=utf-8", headers=_HEADERS
        )

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(404, f"no static file {name!r}")
        return Response(files[name], media_type=media_type, headers=_HEADERS)
