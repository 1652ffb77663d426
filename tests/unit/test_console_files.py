"""The send console's files, as the package ships them: nothing loaded from elsewhere, no
markup built from strings, and a policy that lets the page run only its own files."""

from __future__ import annotations

import re
from importlib import resources

from leadstream.web.console import CONSOLE_FILES, CONTENT_SECURITY_POLICY

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def text(name: str) -> str:
    return (resources.files("leadstream.web") / "console" / name).read_text(encoding="utf-8")


def test_every_file_ships_with_the_package_and_fetches_nothing_elsewhere() -> None:
    for name, _media in CONSOLE_FILES.values():
        body = text(name).replace(SVG_NAMESPACE, "")
        assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]", body), name
        assert "@import" not in body and "url(" not in body, name


def test_the_page_loads_only_its_own_script_and_style_and_runs_no_inline_code() -> None:
    page = text("index.html")
    assert re.findall(r'<script[^>]*src="([^"]+)"', page) == ["/console/console.js"]
    assert re.findall(r'<link[^>]*href="([^"]+)"', page) == ["/console/console.css"]
    assert re.findall(r"<script(?![^>]*src=)", page) == [], "inline script"
    assert re.findall(r"<[^>]*\son[a-z]+\s*=", page) == [], "an inline event handler"
    assert "style=" not in page


def test_the_script_never_parses_strings_as_markup() -> None:
    script = text("console.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "new Function" not in script and "localStorage" not in script


def test_the_policy_allows_this_origin_only() -> None:
    policy = dict(
        directive.strip().split(" ", 1) for directive in CONTENT_SECURITY_POLICY.split(";")
    )
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src"):
        assert policy[directive] == "'self'", directive
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'none'"
