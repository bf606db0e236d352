"""API profiles: one per Waldur version the mock can stand in for (`--api`).

Import-light on purpose (the CLI reads the names): a profile module is imported only
when `get_profile` asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mockserver.profiles.base import ApiProfile

DEFAULT_API = "8.0.5"
API_NAMES = ("8.0.5", "7.9.4", "8.1")


def get_profile(name: str = DEFAULT_API) -> ApiProfile:
    """The profile of one version (its module pulls in its handlers and adapter)."""
    if name == "8.0.5":
        from mockserver.profiles.v8_0_5 import PROFILE
    elif name == "7.9.4":
        from mockserver.profiles.v7_9_4 import PROFILE
    elif name == "8.1":
        from mockserver.profiles.v8_1 import PROFILE
    else:
        raise KeyError(f"unknown API profile {name!r}; known: {', '.join(API_NAMES)}")
    return PROFILE


__all__ = ["API_NAMES", "DEFAULT_API", "get_profile"]
