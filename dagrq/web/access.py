"""Who may see and act in ``dagrq ui``, and how a handler answers: the token check, a page
rendered from a template, Redis calls off the event loop."""

from __future__ import annotations

import hmac
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import DagrqError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def guard(request: Request, *, action: bool = False) -> Response | None:
    """None when ``request`` may go on; else the 403 answer. Every request needs the token
    when the app requires it; an action always does. The token comes as ``Authorization:
    Bearer``, ``X-Dagrq-Token``, ``?token=`` or the cookie a page set."""
    state = request.app.state
    if not (action or state.require_token):
        return None
    bearer = request.headers.get("authorization", "")
    given = (
        (bearer[7:] if bearer[:7].lower() == "bearer " else "")
        or request.headers.get("x-dagrq-token")
        or request.query_params.get("token")
        or request.cookies.get("dagrq_token")
        or ""
    )
    if hmac.compare_digest(given, state.secret):
        return None
    return JSONResponse({"error": "token required"}, status_code=403)


def page(
    request: Request, template: str, title: str, *, status_code: int = 200, **context: Any
) -> Response:
    """``template`` rendered for ``request``; a token given as ``?token=`` is remembered in a
    cookie when the app requires one."""
    state = request.app.state
    response = state.templates.TemplateResponse(
        request, template, {"title": title, "token": state.secret, **context}, status_code
    )
    if state.require_token and request.query_params.get("token") == state.secret:
        response.set_cookie("dagrq_token", state.secret, httponly=True, samesite="strict")
    return response  # type: ignore[no-any-return]


async def in_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a worker thread (Redis calls block)."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token.

    Raises:
        DagrqError: naming the host and the fix.
    """
    if host not in LOOPBACK and not token:
        raise DagrqError(
            f"--host {host} serves the UI beyond this machine: give --token (or "
            "DAGRQ_UI_TOKEN) so that only holders of it can see runs and act on them"
        )
