"""Users and API tokens. A token is shown once; only its SHA-256 digest is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from core.auth import ROLES
from core.auth.passwords import MIN_LENGTH, hash_password
from core.storage.models import ApiToken, User

TOKEN_PREFIX = "hl_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


async def create_user(username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 150:
        raise ValueError("username must be 1 to 150 characters")
    if len(password) < MIN_LENGTH:
        raise ValueError(f"password must have at least {MIN_LENGTH} characters")
    if await User.filter(username=username).exists():
        raise ValueError(f"user {username!r} already exists")
    return await User.create(username=username, password_hash=hash_password(password), role=role)


async def create_token(user: User) -> str:
    """A new API token for `user`: returned once, stored as its digest."""
    token = new_secret(TOKEN_PREFIX)
    await ApiToken.create(user=user, token_hash=digest(token))
    return token


async def user_for_token(token: str) -> User | None:
    row = await ApiToken.get_or_none(token_hash=digest(token)).prefetch_related("user")
    if row is None:
        return None
    await ApiToken.filter(id=row.id).update(last_used_at=datetime.now(UTC))
    return row.user
