"""The users of the shipped ``docker/users.acl`` and the secrets the shipped configs read.

``docker/redis.conf``, ``docker/users.acl`` and ``docker/sentinel.conf`` hold no
secret. Where one belongs they say ``${NAME}``: the value of the environment
variable ``NAME``; in the ACL file, ``#${NAME}``: the SHA-256 of that value, the
form in which Redis keeps a password. ``docker/entrypoint.sh`` fills them in when
a container starts; :func:`render` does the same in Python, for the private
servers and topologies of the tests (:mod:`ponos_redis._redis_server`,
:mod:`ponos_redis._topology`), which generate their passwords per run
(:func:`generate_secrets`) and so run the shipped files as they are.

The rules, the same in both:

- a line whose first character is ``#`` is a comment and is left out (an ACL
  file may not hold comments, so the template keeps its own out of the output);
- ``${NAME}`` (``NAME``: ``[A-Z_][A-Z0-9_]*``; anything else between ``${`` and
  ``}`` is refused) becomes the variable's value, and ``#${NAME}`` becomes ``#``
  and the value's SHA-256 in lowercase hex;
- a variable that is unset, or whose value is not 16 or more of the characters
  ``A-Z a-z 0-9 . _ + / = -`` (hex and base64 passwords fit), is refused:
  nothing is written. These characters need no quoting in any Redis config file.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping

__all__ = [
    "ADMIN_PASSWORD_ENV",
    "ADMIN_USER",
    "APP_PASSWORD_ENV",
    "APP_USER",
    "MONITOR_PASSWORD_ENV",
    "MONITOR_USER",
    "READONLY_PASSWORD_ENV",
    "READONLY_USER",
    "REPLICATION_PASSWORD_ENV",
    "REPLICATION_USER",
    "SECRET_ENVS",
    "SENTINEL_PASSWORD_ENV",
    "SENTINEL_USER",
    "SENTINEL_USER_PASSWORD_ENV",
    "SecretError",
    "generate_secrets",
    "placeholders",
    "render",
    "render_line",
]

# The users of docker/users.acl, and the variables holding their passwords.
APP_USER = "ponos"  # the stores, the runtime, metrics and every ponos-redis command
READONLY_USER = "ponos-readonly"  # the read-only views of ponos-redis (status, tasks list, ...)
ADMIN_USER = "ponos-admin"  # operators: everything
REPLICATION_USER = "ponos-replication"  # replicas, logging in to their master (masteruser)
SENTINEL_USER = "ponos-sentinel"  # the sentinels, logging in to the data nodes (sentinel auth-user)
MONITOR_USER = "ponos-monitor"  # the Prometheus redis exporter

APP_PASSWORD_ENV = "PONOS_REDIS_PASSWORD"
READONLY_PASSWORD_ENV = "PONOS_REDIS_READONLY_PASSWORD"
ADMIN_PASSWORD_ENV = "PONOS_REDIS_ADMIN_PASSWORD"
REPLICATION_PASSWORD_ENV = "PONOS_REDIS_REPLICATION_PASSWORD"
SENTINEL_USER_PASSWORD_ENV = "PONOS_REDIS_SENTINEL_PASSWORD"
MONITOR_PASSWORD_ENV = "PONOS_REDIS_MONITOR_PASSWORD"
# The sentinels' own password (requirepass in sentinel.conf): clients' sentinel_password_env.
SENTINEL_PASSWORD_ENV = "PONOS_SENTINEL_PASSWORD"

SECRET_ENVS = (
    APP_PASSWORD_ENV,
    READONLY_PASSWORD_ENV,
    ADMIN_PASSWORD_ENV,
    REPLICATION_PASSWORD_ENV,
    SENTINEL_USER_PASSWORD_ENV,
    MONITOR_PASSWORD_ENV,
    SENTINEL_PASSWORD_ENV,
)

_PLACEHOLDER_RE = re.compile(r"(#?)\$\{([^}]*)\}")
_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_SECRET_RE = re.compile(r"[A-Za-z0-9._+/=-]{16,}")
MIN_SECRET_CHARS = 16


class SecretError(ValueError):
    """A secret a config needs is missing or unusable (the message never holds its value)."""


def placeholders(text: str) -> list[str]:
    """The variables ``text`` needs, in order of first use (comment lines left aside)."""
    names: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        for match in _PLACEHOLDER_RE.finditer(line):
            if match[2] not in names:
                names.append(match[2])
    return names


def _secret(name: str, values: Mapping[str, str]) -> str:
    if not _NAME_RE.fullmatch(name):
        raise SecretError(f"${{{name}}} is not a variable name")
    value = values.get(name)
    if value is None:
        raise SecretError(f"{name} is not set, and the config needs it")
    if not _SECRET_RE.fullmatch(value):
        raise SecretError(
            f"{name} must be {MIN_SECRET_CHARS} or more of A-Z a-z 0-9 . _ + / = - "
            "(for example: openssl rand -hex 32)"
        )
    return value


def render_line(line: str, values: Mapping[str, str]) -> str:
    """One non-comment line with its placeholders filled in from ``values``.

    Raises:
        SecretError: a variable it needs is missing from ``values`` or unusable.
    """

    def fill(match: re.Match[str]) -> str:
        value = _secret(match[2], values)
        if match[1]:
            return "#" + hashlib.sha256(value.encode("ascii")).hexdigest()
        return value

    return _PLACEHOLDER_RE.sub(fill, line)


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` with comment lines left out and every placeholder filled in from ``values``
    (the environment, or generated secrets), as ``docker/entrypoint.sh`` renders it.

    Raises:
        SecretError: a variable it needs is missing from ``values`` or unusable.
    """
    lines = [render_line(line, values) for line in text.splitlines() if not line.startswith("#")]
    return "".join(line + "\n" for line in lines)


def generate_secrets(names: tuple[str, ...] = SECRET_ENVS) -> dict[str, str]:
    """A fresh random password (48 hex digits) for each of ``names``."""
    return {name: secrets.token_hex(24) for name in names}
