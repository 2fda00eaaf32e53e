"""Console sessions (a cookie) and the login rate limit.

The cookie holds a random token; the database keeps its SHA-256 digest, the user, the expiry and
the session's CSRF token. Login failures are limited per (username, client IP) in this process:
with `serve --workers N` each process counts on its own.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta

from core.auth.tokens import digest, new_secret
from core.storage.models import User, UserSession

COOKIE_NAME = "hookline_session"
CSRF_HEADER = "x-csrf-token"
SESSION_LIFETIME = timedelta(hours=12)


async def open_session(user: User) -> tuple[str, UserSession]:
    token = new_secret()
    session = await UserSession.create(
        user=user, token_hash=digest(token), csrf_token=new_secret(), expires_at=datetime.now(UTC) + SESSION_LIFETIME
    )
    return token, session


async def session_for(token: str) -> UserSession | None:
    session = await UserSession.get_or_none(token_hash=digest(token)).prefetch_related("user")
    if session is None:
        return None
    if session.expires_at <= datetime.now(UTC):
        await UserSession.filter(id=session.id).delete()
        return None
    return session


async def close_session(token: str) -> None:
    await UserSession.filter(token_hash=digest(token)).delete()


class LoginLimiter:
    """At most `attempts` failed logins per (username, IP) in `window` seconds; a success resets."""

    def __init__(self, attempts: int = 5, window: float = 900.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def retry_after(self, username: str, ip: str) -> float:
        """Seconds until another attempt is allowed; 0 when allowed now."""
        failures = self._failures.get((username.lower(), ip))
        if not failures:
            return 0.0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.attempts:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, username: str, ip: str) -> None:
        self._failures[(username.lower(), ip)].append(time.monotonic())

    def succeeded(self, username: str, ip: str) -> None:
        self._failures.pop((username.lower(), ip), None)
