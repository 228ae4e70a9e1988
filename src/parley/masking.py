"""Credentials hidden in what parley prints and logs: URLs with a password, a token or a key."""

from __future__ import annotations

import re

# ``user:password@`` or a lone ``token@`` before the host; a password may hold / and ? (as
# SQLAlchemy reads it), a user name may not.
_USERINFO = re.compile(r"([^:/?#@]*)(:[^@]*)?@")
# Query parameters whose values are credentials: api_key=, key=, access_token=, sig=, …
_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential", re.IGNORECASE)
_PARAM = re.compile(r"(?:^|(?<=[&;]))([^=&;#]*)=([^&;#]*)")


def mask_url(url: str) -> str:
    """``url`` with its credentials hidden: the password of ``scheme://user:password@host``
    (a lone ``token@host`` entirely) and the values of query parameters named like a key."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo = _USERINFO.match(rest)
    if userinfo:
        user, password = userinfo.groups()
        rest = (f"{user}:****@" if password else "****@") + rest[userinfo.end() :]
    head, question, query = rest.partition("?")
    return f"{scheme}://{head}{question}{_PARAM.sub(_mask_param, query)}"


def _mask_param(match: re.Match[str]) -> str:
    name, value = match.groups()
    return f"{name}=****" if value and _SECRET_PARAM.search(name) else match.group(0)
