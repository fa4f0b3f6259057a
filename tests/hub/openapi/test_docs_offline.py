"""/docs works on a closed network (decision 0024, "Docs offline"): a page of the hub's
own that loads Swagger UI from the hub alone, with no inline code, under a strict
Content-Security-Policy; /redoc redirects to it."""

import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from onceonly.hub.ops import docs

from tests.hub_testing import RunningHub, problem_type

STRICT_POLICY = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}
VENDORED = Path(docs.__file__).resolve().parent / "docs_assets" / "swagger-ui"


@dataclass
class Page(HTMLParser):
    """What a browser would load from the page, and any code written into it."""

    loads: list[tuple[str, str]] = field(default_factory=list)  # (kind, URL)
    links: list[str] = field(default_factory=list)  # URLs the page only points to
    inline_code: list[str] = field(default_factory=list)
    _open: str | None = None  # script or style, while inside one

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in ("script", "style"):
            self._open = tag
        for name in values:
            if name.startswith("on") or name == "style":
                self.inline_code.append(f"<{tag} {name}=...>")
        if tag == "script":
            assert values.get("src"), "a script without src is inline"
            self.loads.append(("script", values["src"]))
        elif tag == "link":
            self.loads.append((values.get("rel", ""), values["href"]))
        elif tag in ("img", "iframe", "embed", "source", "frame"):
            self.loads.append((tag, values["src"]))
        elif tag == "object":
            self.loads.append((tag, values["data"]))
        elif tag == "a":
            self.links.append(values["href"])
        elif tag in ("style", "base"):
            self.inline_code.append(f"<{tag}>")
        for name in ("data-openapi-url", "action", "formaction", "poster", "background"):
            if name in values:
                self.links.append(values[name])

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline_code.append(f"<{self._open}>{data.strip()[:40]}")


@pytest.fixture(scope="module")
def page_response(hub: RunningHub) -> httpx.Response:
    response = httpx.get(f"{hub.url}/docs")
    assert response.status_code == 200, response.text
    return response


@pytest.fixture(scope="module")
def page(page_response: httpx.Response) -> Page:
    parsed = Page()
    parsed.feed(page_response.text)
    parsed.close()
    return parsed


def policy(header: str) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def absolute(hub: RunningHub, url: str) -> str:
    """The URL as the browser resolves it on /docs; asserts that it is the hub's own."""
    resolved = urljoin(f"{hub.url}/docs", url)
    hub_origin, origin = urlsplit(hub.url), urlsplit(resolved)
    assert (origin.scheme, origin.netloc) == (hub_origin.scheme, hub_origin.netloc), url
    return resolved


def test_page_is_html_under_the_strict_policy(page_response: httpx.Response) -> None:
    assert page_response.headers["content-type"] == "text/html; charset=utf-8"
    assert policy(page_response.headers["content-security-policy"]) == STRICT_POLICY
    assert page_response.headers["x-content-type-options"] == "nosniff"
    assert page_response.headers["x-request-id"]  # the middleware's, as on every answer


def test_page_loads_everything_from_the_hub(hub: RunningHub, page: Page) -> None:
    kinds = sorted(kind for kind, _ in page.loads)
    assert kinds == ["icon", "script", "script", "stylesheet", "stylesheet"]
    for _, url in page.loads:
        absolute(hub, url)
    for url in page.links:
        absolute(hub, url)


def test_page_has_no_inline_code(page: Page) -> None:
    assert page.inline_code == []


@pytest.mark.parametrize(
    ("kind", "media_type"),
    [("script", "text/javascript"), ("stylesheet", "text/css"), ("icon", "image/png")],
)
def test_every_asset_is_served_by_the_hub(
    hub: RunningHub, page: Page, kind: str, media_type: str
) -> None:
    urls = [url for loaded, url in page.loads if loaded == kind]
    assert urls
    for url in urls:
        response = httpx.get(absolute(hub, url))
        assert response.status_code == 200, url
        assert response.headers["content-type"].split(";")[0] == media_type, url
        assert policy(response.headers["content-security-policy"]) == STRICT_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content, url


def test_swagger_ui_starts_from_a_file_on_the_document_the_page_names(
    hub: RunningHub, page: Page
) -> None:
    scripts = [url for kind, url in page.loads if kind == "script"]
    start = httpx.get(absolute(hub, scripts[-1])).text
    assert "SwaggerUIBundle(" in start
    assert re.search(r"validatorUrl:\s*null", start)  # nothing is sent to another site
    (document_url,) = {url for url in page.links if url.endswith("openapi.json")}
    response = httpx.get(absolute(hub, document_url))
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1.")  # Swagger UI 5 renders 3.1


def test_redoc_redirects_to_docs(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/redoc")
    assert response.status_code == 307
    assert urljoin(f"{hub.url}/redoc", response.headers["location"]) == f"{hub.url}/docs"


def test_docs_routes_stay_out_of_the_document(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/openapi.json")
    assert response.status_code == 200
    assert not [path for path in response.json()["paths"] if "docs" in path or "redoc" in path]


@pytest.mark.parametrize(
    "name", ["nothing.js", "LICENSE", "SOURCE.md", "..%2Fdocs.py", "swagger-ui%2FNOTICE"]
)
def test_only_the_listed_assets_are_served(hub: RunningHub, name: str) -> None:
    response = httpx.get(f"{hub.url}/docs/assets/{name}")
    assert response.status_code == 404
    assert problem_type(response) == "not-found"


def test_vendored_files_are_those_recorded() -> None:
    """The sums in SOURCE.md are those of the files as copied from swagger-ui-dist."""
    recorded = dict(
        (name, digest)
        for digest, name in re.findall(
            r"^\s+([0-9a-f]{64})\s+(\S+)$", (VENDORED / "SOURCE.md").read_text(), re.M
        )
    )
    files = {path.name for path in VENDORED.iterdir()} - {"SOURCE.md"}
    assert set(recorded) == files
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == digest, name
