"""The shipped Redis configuration in ``docker/`` (``redis.conf``, ``sentinel.conf``,
``compose.yaml``): one lookup that works from a checkout and from an installed
wheel (which carries the folder as ``ponos_redis/docker``), as
:func:`ponos_redis._scripts.lua_dir` does for the Lua scripts.

The test topologies, the demo's and the simulation's private servers start
from these files, so what ships is what runs.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["docker_dir", "docker_file"]


def docker_dir() -> Path:
    """The folder holding the shipped configs: inside the package when installed, else the checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "docker", here.parent / "docker"):
        if (candidate / "redis.conf").is_file():
            return candidate
    raise FileNotFoundError(f"no docker/ folder with redis.conf next to {here}")


def docker_file(name: str) -> Path:
    """The shipped ``docker/<name>`` (``redis.conf``, ``sentinel.conf`` or ``compose.yaml``)."""
    path = docker_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path
