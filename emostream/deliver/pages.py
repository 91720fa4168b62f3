"""The browser pages: the live swarm at ``/`` and ``/events/{event_id}``, the operator
``/dashboard``, and their static assets (plain HTML, CSS and ES modules: no build step).

Pages carry their configuration in ``data-`` attributes, never in inline script, so they work
under a strict Content-Security-Policy. Static assets are served with CORS so other sites can
import the client module (``/static/emostream.js``) cross-origin.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import emoji as emoji_data
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ..contract import DEFAULT_EVENT, validate_event_id
from ..settings import Settings

STATIC_DIR = Path(__file__).with_name("static")

# The pad when no allow-list is configured: the simulator's mix first, then a few more.
DEFAULT_PAD = ("🔥", "😂", "👏", "❤️", "😮", "😢", "🎉", "👍")
# Pages name their own origin only; connect-src also covers the SSE stream and the POSTs.
# No site may frame them (clickjacking the pad or the dashboard's token form), and no page
# address (event ids) leaks to other sites through the Referer header.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SharedStaticFiles(StaticFiles):
    """Static files any origin may load: a cross-origin module script needs CORS."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response


def emoji_label(symbol: str) -> str:
    """A spoken name for a button ("red heart" for ❤️), from the Unicode emoji data."""
    name = str(emoji_data.demojize(symbol, delimiters=("", "")))
    return name.replace("_", " ") if name != symbol else symbol


def pad_emojis(settings: Settings) -> list[str]:
    return list(settings.allowed_emojis) or list(DEFAULT_PAD)


def render_swarm_page(template: str, event_id: str, settings: Settings) -> str:
    """Fill the page template's placeholders; every value is escaped for an attribute."""
    pad = [{"emoji": e, "label": emoji_label(e)} for e in pad_emojis(settings)]
    values = {
        "event_id": event_id,
        "pad_json": json.dumps(pad, ensure_ascii=False),
        "window_ms": str(settings.window_ms),
        "top_n": str(settings.top_n),
        "scale": str(settings.scale),
    }
    page = template
    for name, value in values.items():
        page = page.replace("{{" + name + "}}", html.escape(value, quote=True))
    return page


def page_template(name: str) -> str:
    """A page of static/ with the start every page shares (static/head.html: doctype, charset,
    color scheme, no favicon request) in place of its ``{{head}}``."""
    head = (STATIC_DIR / "head.html").read_text(encoding="utf-8")
    return (STATIC_DIR / name).read_text(encoding="utf-8").replace("{{head}}", head.rstrip("\n"))


def page_routes(settings: Settings) -> list[BaseRoute]:
    swarm_template = page_template("swarm.html")
    dashboard = page_template("dashboard.html")

    def swarm_page(event_id: str) -> Response:
        body = render_swarm_page(swarm_template, event_id, settings)
        return HTMLResponse(body, headers=PAGE_HEADERS)

    async def home(request: Request) -> Response:
        return swarm_page(DEFAULT_EVENT)

    async def event_page(request: Request) -> Response:
        return swarm_page(validate_event_id(request.path_params["event_id"]))

    async def dashboard_page(request: Request) -> Response:
        return HTMLResponse(dashboard, headers=PAGE_HEADERS)

    return [
        Route("/", home),
        Route("/events/{event_id}", event_page),
        Route("/dashboard", dashboard_page),
        Mount("/static", SharedStaticFiles(directory=STATIC_DIR), name="static"),
    ]
