"""The web console: server-rendered pages (Jinja2) and a little JavaScript, over the same
services as the API. See docs/console.md."""

from core.console.routes import console_routes

__all__ = ["console_routes"]
