"""Who may read and set whose token quota, as Waldur's `TokenQuotaViewSet` decides.

Reading: anyone reads their own usage; `?user_uuid=` naming someone else needs staff or
support (403 otherwise). Waldur compares the raw query value with the caller's uuid as
32 hex digits, so a regular user who spells their own uuid with hyphens is refused too.
Setting limits needs staff or support, checked before the body is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from mockserver.errors import NotFound, PermissionDenied
from mockserver.store import User
from mockserver.util import is_uuid_spelling, normalize_uuid


def usage_subject(viewer: User, requested: str | None, users: Sequence[User]) -> User:
    """The user whose usage `viewer` gets for `?user_uuid=requested` (None: not given)."""
    if requested is None:
        return viewer
    if requested != viewer.uuid and not viewer.sees_everything:
        raise PermissionDenied("You can only view your own usage.")
    return user_by_uuid(users, requested)


def ensure_may_set_quota(viewer: User) -> None:
    if not viewer.sees_everything:
        raise PermissionDenied()


def user_by_uuid(users: Sequence[User], raw: str) -> User:
    """404 "User not found." for an unknown uuid, and for one that is not a uuid at all."""
    if not is_uuid_spelling(raw):
        raise NotFound("User not found.")
    wanted = normalize_uuid(raw)
    found = next((u for u in users if u.uuid == wanted), None)
    if found is None:
        raise NotFound("User not found.")
    return found
