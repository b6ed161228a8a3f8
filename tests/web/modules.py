"""Load the web-admin's ES modules into a real Chromium page without a server: Playwright answers the page's
requests from the package's static folder, so module tests run in the browser that runs the app."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route

import apuppet

STATIC = Path(apuppet.__file__).parent / "web" / "static"
ORIGIN = "http://apuppet.test"


def serve_static(page: Page) -> None:
    def handle(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        if path == "/blank.html":
            route.fulfill(body="<!doctype html><title>modules</title>", content_type="text/html")
            return
        file = STATIC / path.removeprefix("/web-admin/")
        if not file.is_file():
            route.fulfill(status=404, body="")
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            kind = "text/javascript"
        route.fulfill(body=file.read_bytes(), content_type=kind)

    page.route(f"{ORIGIN}/**", handle)
    page.goto(f"{ORIGIN}/blank.html")


def call(page: Page, module: str, expression: str, arg: Any = None) -> Any:
    """Evaluate `expression` (a function body using `m`, the imported module, and `arg`) in the page."""
    return page.evaluate(
        f"async (arg) => {{ const m = await import('{ORIGIN}/web-admin/js/{module}'); {expression} }}", arg
    )


def serve_page_on(page: Page, origin: str) -> None:
    """Serve the web-admin under `<origin>web-admin/` from the package, leaving every other path (the Janus
    API) to the real server at that origin: the page then talks to a server that cannot serve it (Janus)."""
    kinds = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

    def handle(route: Route) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0].removeprefix("web-admin/") or "index.html"
        file = STATIC / path
        if not file.is_file():
            route.fulfill(status=404, body="")
            return
        route.fulfill(body=file.read_bytes(), content_type=kinds.get(file.suffix, "application/octet-stream"))

    page.route(f"{origin}web-admin/**", handle)
