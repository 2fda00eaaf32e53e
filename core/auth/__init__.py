"""Who is calling: users, API tokens, console sessions, and the middleware that requires them."""

from __future__ import annotations

ROLES = ("admin", "agent")
