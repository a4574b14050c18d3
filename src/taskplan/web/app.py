"""The FastAPI application: API, pages, metrics, static files, auth and error mapping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskplan import __version__
from taskplan.engine import Engine
from taskplan.errors import TaskplanError
from taskplan.web import api, pages
from taskplan.web.auth import COOKIE, CSRF_FIELD, CSRF_HEADER, Auth, is_loopback
from taskplan.web.errors import message_of, status_of
from taskplan.web.live import ChangeWatcher
from taskplan.web.views import Ctx

log = logging.getLogger("taskplan.web")
HERE = Path(__file__).parent
OPEN_PATHS = ("/static/", "/login", "/favicon.ico")


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/metrics"))


def _from_browser(request: Request) -> bool:
    h = request.headers
    return "origin" in h or "sec-fetch-site" in h or "cookie" in h


def _cross_site(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
    return request.headers.get("sec-fetch-site") == "cross-site" or origin == "null"


def error_response(request: Request, status: int, message: str) -> Response:
    if _is_api(request.url.path) or request.method != "GET":
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return pages.error_page(request, status, message)


def csrf_refused(request: Request | None = None) -> Response:
    kind = (request.headers.get("content-type", "") if request is not None else "").lower()
    if (request is not None and CSRF_HEADER not in request.headers
            and kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))):
        # A console button pressed with JavaScript off: the browser posted the plain form,
        # which carries no CSRF token (the script sends it). Reloading would not help.
        message = ("this button needs JavaScript: the console's script sends it with the page's"
                   " CSRF token; allow scripts for this site, or use the CLI or the API")
        if "text/html" in request.headers.get("accept", ""):
            return pages.error_page(request, 403, message)
        return JSONResponse({"error": message, "status": 403}, status_code=403)
    return JSONResponse({"error": "missing or wrong CSRF token (reload the page)",
                         "status": 403}, status_code=403)


def _host_name(host_header: str) -> str:
    """The name part of a Host header: `127.0.0.1:8440` -> 127.0.0.1, `[::1]:80` -> ::1."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class HeadAsGet:
    """HEAD answered as GET without its body (the routes declare GET only, so it was a 405):
    a monitor's or `curl -I`'s check sees the page's status and headers. Not the event
    stream, whose body never ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "HEAD"
                or scope["path"].startswith("/api/v1/stream")):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(dict(scope, method="GET"), receive, headers_only)


def create_app(engine: Engine, *, timezone: str = "UTC", token: str | None = None,
               loopback_hosts_only: bool = False) -> FastAPI:
    watcher = ChangeWatcher(engine.store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        watcher.stop()

    # FastAPI's own docs pages load Swagger UI from a CDN: the console lists the OpenAPI
    # description itself (/api/docs), so it works offline and under its CSP.
    app = FastAPI(title="taskplan", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json", lifespan=lifespan)
    auth = Auth.create(token)
    app.state.ctx = Ctx(engine, timezone)
    app.state.auth = auth
    app.state.watcher = watcher

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        host = request.headers.get("host", "")
        if loopback_hosts_only and not is_loopback(_host_name(host)):
            return JSONResponse({"error": f"Host {host!r} is not a loopback name: this console"
                                 " has no token, so it answers only to localhost, 127.0.0.1"
                                 " and ::1", "status": 403}, status_code=403)
        if "\x00" in path or "\x00" in unquote(request.url.query):
            # No name or value holds one (PostgreSQL's text cannot): refused here, as any
            # other bad input, rather than failing in the store.
            return error_response(request, 422, "the request's path or query holds a NUL"
                                  " character (%00): no name or value may contain one")
        if path.startswith(OPEN_PATHS):
            return await call_next(request)  # type: ignore[no-any-return]
        by_bearer = auth.bearer_ok(request.headers.get("authorization"))
        by_cookie = auth.cookie_ok(request.cookies.get(COOKIE))
        if auth.required and not (by_bearer or by_cookie):
            if _is_api(path) or request.method != "GET":
                return JSONResponse({"error": "a token is required (Authorization: Bearer"
                                     " TOKEN)", "status": 401}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if request.method not in ("GET", "HEAD", "OPTIONS") and not by_bearer:
            if _cross_site(request):
                return JSONResponse({"error": "cross-site request refused", "status": 403},
                                    status_code=403)
            # The log out form is a plain form (it works without the script): its CSRF
            # token comes in the body, checked by the endpoint itself.
            if (_from_browser(request) and path != "/logout"
                    and not auth.csrf_ok(request.headers.get(CSRF_HEADER))):
                return csrf_refused(request)
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; style-src 'self';"
                " img-src 'self' data:; frame-ancestors 'none'")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.status_code != 404 else (
            f"no such page: {request.url.path}" if exc.detail == "Not Found" else str(exc.detail))
        response = error_response(request, exc.status_code, message)
        # The router's own headers: a 405's Allow (which RFC 9110 requires) names the methods.
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else
                         str(err.get("msg", "invalid")))
        return error_response(request, 422, "; ".join(parts) or "invalid request")

    @app.exception_handler(TaskplanError)
    async def taskplan_error(request: Request, exc: TaskplanError) -> Response:
        return error_response(request, status_of(exc), message_of(exc))

    @app.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: OverflowError) -> Response:
        # A number or a date in the request beyond what the store or datetime can hold
        # (a run id past 2**63, a year past 9999): the request is wrong, not the server.
        return error_response(request, 422, f"out of range: {message_of(exc)}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug: one line in the shape of every other error (a page for a browser), where a
        # bare "Internal Server Error" was; the server's log still has the traceback.
        message = (f"internal error: {type(exc).__name__}: {message_of(exc)} (the server's log"
                   " has the traceback)")
        try:
            return error_response(request, 500, message)
        except Exception:  # the error page itself failed to render
            return JSONResponse({"error": message, "status": 500}, status_code=500)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        return pages.login_page(request, next, None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        target = (form.get("next") or ["/"])[0]
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"
        if not auth.login_ok((form.get("token") or [""])[0]):
            return pages.login_page(request, target, "wrong token", status=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, auth.session, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) or [""])[0]
        if _from_browser(request) and not auth.csrf_ok(given):
            return csrf_refused()
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from taskplan.web.metrics import render

        body, content_type = render(engine.store)
        return Response(body, media_type=content_type)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(HeadAsGet)
    return app


__all__ = ["create_app"]
