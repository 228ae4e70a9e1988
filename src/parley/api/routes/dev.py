"""Dev mode: a token for any user name, for the web page's one-click sign-in.

The router is registered only when tokens are signed with the secret parley generated for itself
and the server is configured for loopback (:func:`enabled`). Each request is checked again: it must
have arrived on a loopback socket from a loopback peer, and not through a proxy, or it is a 404.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from parley.api.deps import ServicesDep
from parley.auth import issue_token
from parley.config import Settings, ensure_jwt_secret, uses_local_secret
from parley.errors import NotFound

router = APIRouter(prefix="/api/dev", tags=["dev"], include_in_schema=False)

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def enabled(settings: Settings) -> bool:
    """Dev tokens exist only with the local secret on a loopback address."""
    return uses_local_secret(settings) and is_loopback(settings.host)


def _check_local(request: Request) -> None:
    server = request.scope.get("server") or (None, None)
    client = request.scope.get("client") or (None, None)
    proxied = any(name in request.headers for name in PROXY_HEADERS)
    if proxied or not (is_loopback(server[0]) and is_loopback(client[0])):
        raise NotFound("not found")


@router.get("")
async def info(request: Request, s: ServicesDep) -> dict[str, Any]:
    """Tells the web page that dev sign-in is available."""
    _check_local(request)
    return {"dev_tokens": enabled(s.settings)}


@router.get("/token")
async def dev_token(
    request: Request,
    s: ServicesDep,
    user: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")],
) -> dict[str, Any]:
    """A token for ``user``, signed with the local secret."""
    _check_local(request)
    if not enabled(s.settings):
        raise NotFound("not found")
    return {"token": issue_token(ensure_jwt_secret(s.settings), user), "user": user}
