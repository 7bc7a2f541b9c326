"""Login on every route: Gradio's `auth` guards the page and most API routes, but not all of them
(in gradio 6, `/gradio_api/cancel`, `/gradio_api/reset`, heartbeats, streams and FastAPI's own
`/openapi.json` answer anyone). `RequireLogin` refuses every request without a login, except the
login page, the login form's POST and the static files that page loads.

"Logged in" is decided by Gradio's own check (its `/gradio_api/user` route: the access-token
cookie its login sets, looked up in the app's tokens), so there is one notion of a session.
"""

from __future__ import annotations

import inspect

from gradio.route_utils import API_PREFIX
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

# What the login page needs before anyone has logged in (seen in a browser): the page itself (Gradio
# serves the login form there), the form's POST, and the front end's code, styles, fonts and icon,
# which are the same for every Gradio app. Plus startup-events: `launch()` calls it without a login,
# and it does anything only on that first call.
OPEN = {("GET", "/"), ("HEAD", "/"), ("POST", "/login"), ("POST", "/login/"), ("GET", "/theme.css"),
        ("GET", "/favicon.ico"), ("GET", f"{API_PREFIX}/startup-events")}
OPEN_PREFIXES = ("/assets/", "/static/")
REFUSED = JSONResponse({"detail": {"error": "Not authenticated"}}, status_code=401)  # what Gradio's own check answers


class RequireLogin:
    """ASGI middleware: 401 for any request (HTTP or websocket) that is not logged in, bar `OPEN`."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._current_user = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._is_open(scope) and not await self._user(scope):
            refuse = WebSocketClose(1008) if scope["type"] == "websocket" else REFUSED  # 1008: policy violation
            await refuse(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _is_open(scope: Scope) -> bool:
        method, path = scope.get("method"), scope["path"]
        return (method, path) in OPEN or (method == "GET" and path.startswith(OPEN_PREFIXES))

    async def _user(self, scope: Scope) -> str | None:
        if self._current_user is None:
            self._current_user = _gradio_user_check(scope["app"])
        user = self._current_user(HTTPConnection(scope))
        return await user if inspect.isawaitable(user) else user


def _gradio_user_check(app):
    """Return the endpoint of Gradio's `/gradio_api/user` route (it takes the request, returns the user)."""
    todo = list(app.routes)
    while todo:
        route = todo.pop()
        if getattr(route, "path", None) == f"{API_PREFIX}/user":
            return route.endpoint
        todo += getattr(getattr(route, "original_router", None), "routes", [])  # FastAPI's included routers
    raise RuntimeError(f"gradio has no {API_PREFIX}/user route: cannot check logins (gradio version changed?)")
