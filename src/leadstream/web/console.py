"""``GET /console``: the send console, a page in the browser served by every worker.

Three static files shipped inside the package (``web/console/``): the page, its script and
its style, plain HTML, JavaScript and CSS with no build step and nothing fetched from
elsewhere. The page holds no tenant data: the script signs in with an organization id and
an API key (kept in the tab's sessionStorage only), and reads everything it shows from the
API with that key, so the API's tenant rules are the console's. Each file is answered with
a Content-Security-Policy that lets the page run only its own script and style, and talk
only to the worker that served it.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

from faust.web import Request, Response

from leadstream.web.http import ServedView
from leadstream.web.spec import PUBLIC, Answer, Operation

__all__ = [
    "CONSOLE_FILES",
    "CONTENT_SECURITY_POLICY",
    "ConsolePage",
    "ConsoleScript",
    "ConsoleStyle",
]

# path -> (file in web/console/, media type)
CONSOLE_FILES: dict[str, tuple[str, str]] = {
    "/console": ("index.html", "text/html"),
    "/console/console.js": ("console.js", "text/javascript"),
    "/console/console.css": ("console.css", "text/css"),
}

# Its own script and style only (no inline code, no eval), requests to this worker only,
# no frames, no forms posted anywhere, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def _read(name: str) -> str:
    return (resources.files("leadstream.web") / "console" / name).read_text(encoding="utf-8")


def _declared(path: str, operation_id: str) -> dict[str, Operation]:
    """The GET of one console file, as /openapi.json describes it (web/spec.py)."""
    name, media = CONSOLE_FILES[path]
    summary = (
        "The send console in the browser" if name == "index.html" else f"The send console's {name}."
    )
    described = "A static file of the package, with a Content-Security-Policy"
    return {
        "get": Operation(
            operation_id,
            summary,
            {200: Answer(described, None, media=media)},
            security=PUBLIC,
            errors=(429, 503),
        )
    }


class _ConsoleFile(ServedView):
    """One of the console's files, read once (they are part of the package)."""

    path: ClassVar[str]

    def file(self) -> Response:
        name, media = CONSOLE_FILES[self.path]
        body = _CONTENTS[name]
        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        return self.text(body, content_type=media, headers=headers)


class ConsolePage(_ConsoleFile):
    path = "/console"
    operations: ClassVar = _declared(path, "getConsole")

    async def get(self, request: Request) -> Response:
        return self.file()


class ConsoleScript(_ConsoleFile):
    path = "/console/console.js"
    operations: ClassVar = _declared(path, "getConsoleScript")

    async def get(self, request: Request) -> Response:
        return self.file()


class ConsoleStyle(_ConsoleFile):
    path = "/console/console.css"
    operations: ClassVar = _declared(path, "getConsoleStyle")

    async def get(self, request: Request) -> Response:
        return self.file()


_CONTENTS: dict[str, str] = {name: _read(name) for name, _ in CONSOLE_FILES.values()}
