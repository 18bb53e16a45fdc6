"""Removing passwords from text that may quote a Redis URL.

Its own module (no redis-py) so that log formatting (:mod:`ponos_redis.logs`)
can use it without loading the client.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_QUERY_PASSWORD_RE = re.compile(r"([?&]password=)[^&#\s]*")
# Greedy up to the last "@" before whitespace: the user info ends at the last "@".
_USERINFO_PASSWORD_RE = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)\S*@")


def redact(text: str) -> str:
    """Remove passwords from the Redis URLs in ``text`` (user info and a ``password=`` query).

    The password of the user info runs to the last ``@`` of the URL, so a
    password holding an unencoded ``@``, ``/``, ``?`` or ``#`` is hidden
    whole (at worst more than the password is hidden, never less).

    Args:
        text: a URL, or a message that may quote one.
    """
    text = _QUERY_PASSWORD_RE.sub(r"\1***", text)
    return _USERINFO_PASSWORD_RE.sub(r"\1***@", text)
