"""Load the users file (fixtures/users.yaml or `--users FILE`), refusing bad entries clearly."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from mockserver.errors import ConfigurationError
from mockserver.resources import USERS_FILE
from mockserver.store import User

DEFAULT_USERS_FILE = USERS_FILE
_STRING_FIELDS = ("first_name", "last_name", "email", "password")
_BOOLEAN_FIELDS = ("is_staff", "is_support", "token_expired")
_KNOWN = {"username", "token", "uuid", *_BOOLEAN_FIELDS, *_STRING_FIELDS}


def _user(entry: Any, where: str) -> User:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: expected a mapping with username and token")
    unknown = set(entry) - _KNOWN
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    for key in ("username", "token"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigurationError(f"{where}: '{key}' must be a non-empty string")
    for key in _STRING_FIELDS:
        if key in entry and not isinstance(entry[key], str):
            raise ConfigurationError(f"{where}: '{key}' must be a string")
    for key in _BOOLEAN_FIELDS:
        if key in entry and not isinstance(entry[key], bool):
            raise ConfigurationError(f"{where}: '{key}' must be true or false")
    raw_uuid = entry.get("uuid") or uuid.uuid5(uuid.NAMESPACE_URL, f"waldur-chat-mock:{entry['username']}").hex
    try:
        user_uuid = uuid.UUID(str(raw_uuid)).hex
    except ValueError:
        raise ConfigurationError(f"{where}: 'uuid' is not a valid UUID: {raw_uuid!r}") from None
    return User(
        uuid=user_uuid,
        username=entry["username"],
        token=entry["token"],
        first_name=entry.get("first_name", ""),
        last_name=entry.get("last_name", ""),
        email=entry.get("email", ""),
        is_staff=entry.get("is_staff", False),
        is_support=entry.get("is_support", False),
        password=entry.get("password"),
        token_expired=entry.get("token_expired", False),
    )


def parse_users(document: Any, source: str = "<users>") -> list[User]:
    entries = document.get("users") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"{source}: expected a top-level 'users' list with at least one user")
    users = [_user(entry, f"{source}: users[{i}]") for i, entry in enumerate(entries)]
    for key in ("username", "token", "uuid"):
        values = [getattr(u, key) for u in users]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ConfigurationError(f"{source}: duplicate {key}: {', '.join(duplicates)}")
    return users


def load_users(path: Path = DEFAULT_USERS_FILE) -> list[User]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read users file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"users file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_users(document, str(path))
