"""Every route under /api (docs/api.md)."""

from __future__ import annotations

from starlette.routing import Route

from core.api import auth, conversations, messages, numbers, providers, stream
from core.auth.sessions import LoginLimiter
from core.host import Host


def api_routes(host: Host, limiter: LoginLimiter) -> list[Route]:
    """`limiter` counts failed logins of the API and the console together."""
    return [
        Route("/auth/login", auth.login_endpoint(limiter), methods=["POST"]),
        Route("/auth/logout", auth.logout, methods=["POST"]),
        Route("/auth/me", auth.me, methods=["GET"]),
        Route("/whatsapp-numbers", numbers.list_numbers, methods=["GET"]),
        Route("/whatsapp-numbers", numbers.create_number, methods=["POST"]),
        Route("/whatsapp-numbers/{number_id}", numbers.get_number, methods=["GET"]),
        Route("/whatsapp-numbers/{number_id}", numbers.update_number, methods=["PATCH"]),
        Route("/whatsapp-numbers/{number_id}", numbers.delete_number, methods=["DELETE"]),
        Route("/whatsapp-numbers/{number_id}/qrcode", numbers.number_qrcode, methods=["GET"]),
        Route("/whatsapp-numbers/{number_id}/{provider}/configure", numbers.configure_number, methods=["POST"]),
        Route("/providers", providers.list_providers, methods=["GET"]),
        Route("/conversations", conversations.list_conversations, methods=["GET"]),
        Route("/conversations", conversations.create_conversation, methods=["POST"]),
        Route("/conversations/{conversation_id}/messages", messages.list_messages, methods=["GET"]),
        Route("/conversations/{conversation_id}/messages", messages.send_message, methods=["POST"]),
        Route("/conversations/{conversation_id}/transfer", conversations.transfer_conversation, methods=["POST"]),
        Route("/conversations/{conversation_id}/read", conversations.read_conversation, methods=["POST"]),
        Route("/messages/{message_id}", messages.get_message, methods=["GET"]),
        Route("/events", stream.events, methods=["GET"]),
    ]
