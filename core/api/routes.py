"""Every endpoint under /api (docs/api.md): the table the router and the OpenAPI document share."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.api import auth, conversations, messages, numbers, providers, schemas, stream
from core.api.access import ADMIN, ANYONE
from core.api.contract import Answer, Endpoint
from core.api.openapi import openapi_document
from core.auth.sessions import CSRF_HEADER, LoginLimiter
from core.host import Host

OK = "OK"


def endpoints(limiter: LoginLimiter) -> list[Endpoint]:
    """`limiter` counts failed logins of the API and the console together."""
    return [
        Endpoint("POST", "/auth/login", auth.login_endpoint(limiter), "Sign in: a session cookie and its CSRF token",
                 None, {200: Answer(OK, schemas.LoginResult),
                        401: Answer("`bad_credentials`: wrong username or password", schemas.Error),
                        429: Answer("`rate_limited`: too many failed logins; see `Retry-After`", schemas.Error)},
                 "auth", body=auth.Login,
                 description="Sets the `hookline_session` cookie (HttpOnly, SameSite=Lax, Secure on https). "
                             f"Unsafe requests made with it must send the token as `{CSRF_HEADER}`."),
        Endpoint("POST", "/auth/logout", auth.logout, "End the session of the cookie", ANYONE,
                 {200: Answer(OK, schemas.LoggedOut)}, "auth"),
        Endpoint("GET", "/auth/me", auth.me, "Who is calling", ANYONE, {200: Answer(OK, schemas.Me)}, "auth"),
        Endpoint("GET", "/whatsapp-numbers", numbers.list_numbers, "Every number in the database", ANYONE,
                 {200: Answer(OK, schemas.NumberList)}, "numbers"),
        Endpoint("POST", "/whatsapp-numbers", numbers.create_number, "Add a number, live at once", ADMIN,
                 {201: Answer("Created", schemas.Number),
                  409: Answer("`exists`: a number with that id exists", schemas.Error)},
                 "numbers", body=numbers.NewNumber,
                 description="`settings` are validated by the provider's schema (`GET /api/providers`); "
                             "422 names each bad field as `settings.<field>`."),
        Endpoint("GET", "/whatsapp-numbers/{number_id}", numbers.get_number, "One number", ANYONE,
                 {200: Answer(OK, schemas.Number)}, "numbers"),
        Endpoint("PATCH", "/whatsapp-numbers/{number_id}", numbers.update_number, "Change a number", ADMIN,
                 {200: Answer(OK, schemas.Number), 409: Answer("`managed_by_config`", schemas.Error)},
                 "numbers", body=numbers.NumberChanges,
                 description="Settings are merged into the current ones; a secret left out or sent as the "
                             "mask `********` keeps its value."),
        Endpoint("DELETE", "/whatsapp-numbers/{number_id}", numbers.delete_number, "Delete a number", ADMIN,
                 {204: Answer("Deleted"),
                  409: Answer("`managed_by_config`; `in_use`: it has conversations", schemas.Error)}, "numbers"),
        Endpoint("GET", "/whatsapp-numbers/{number_id}/qrcode", numbers.number_qrcode, "The pairing QR code", ADMIN,
                 {200: Answer("The QR code to scan with the phone", media_type="image/png"),
                  404: Answer("`not_found`; `no_qrcode`: the provider pairs otherwise", schemas.Error),
                  409: Answer("`not_pairing`: no code to show now (connected, starting); the message says why",
                              schemas.Error),
                  502: Answer("The provider failed", schemas.Error)},
                 "numbers", description="WPPConnect: a session that is not running is started first."),
        Endpoint("POST", "/whatsapp-numbers/{number_id}/{provider}/configure", numbers.configure_number,
                 "Set a number's provider and credentials", ADMIN,
                 {200: Answer(OK, schemas.Number), 409: Answer("`managed_by_config`", schemas.Error)},
                 "numbers", body=numbers.Configure,
                 description="The original system's `POST /whatsapp-numbers/:id/twilio/configure`; "
                             "404 for a provider that is not enabled."),
        Endpoint("GET", "/providers", providers.list_providers, "Enabled providers and their settings schema",
                 ANYONE, {200: Answer(OK, schemas.ProviderList)}, "numbers"),
        Endpoint("GET", "/conversations", conversations.list_conversations, "Conversations, newest activity first",
                 ANYONE, {200: Answer(OK, schemas.ConversationPage)}, "conversations", query=conversations.ListQuery),
        Endpoint("POST", "/conversations", conversations.create_conversation,
                 "Start a conversation (or find the existing one)", ANYONE,
                 {201: Answer("The conversation, existing or new", schemas.Conversation)},
                 "conversations", body=conversations.NewConversation),
        Endpoint("GET", "/conversations/{conversation_id}/messages", messages.list_messages,
                 "A conversation's messages, newest first", ANYONE, {200: Answer(OK, schemas.MessagePage)},
                 "conversations", query=messages.Page),
        Endpoint("POST", "/conversations/{conversation_id}/messages", messages.send_message,
                 "Send text, or a file with an optional caption", ANYONE,
                 {201: Answer("Queued (`pending`): a worker sends it", schemas.Message),
                  409: Answer("`number_inactive`: the conversation's number is not active", schemas.Error),
                  413: Answer("The body is over the server's limit", schemas.Error)},
                 "conversations", body=messages.NewText, upload=schemas.Upload),
        Endpoint("POST", "/conversations/{conversation_id}/transfer", conversations.transfer_conversation,
                 "Hand the conversation to the bot or a human", ANYONE, {200: Answer(OK, schemas.Transferred)},
                 "conversations", body=conversations.Transfer),
        Endpoint("POST", "/conversations/{conversation_id}/read", conversations.read_conversation,
                 "Agents have seen the conversation: unread becomes 0", ANYONE,
                 {200: Answer(OK, schemas.Conversation)}, "conversations"),
        Endpoint("GET", "/messages/{message_id}", messages.get_message, "One message", ANYONE,
                 {200: Answer(OK, schemas.Message),
                  409: Answer("`unsupported`: the provider cannot look statuses up", schemas.Error),
                  502: Answer("The provider failed; `code` is the provider's", schemas.Error)},
                 "conversations", query=messages.MessageQuery),
        Endpoint("GET", "/events", stream.events, "Live events (Server-Sent Events)", ANYONE,
                 {200: Answer("`message.created`, `message.status`, `conversation.updated`, `number.state` "
                              "(docs/api.md#live-events)", media_type="text/event-stream")},
                 "events", query=stream.EventsQuery,
                 headers={stream.RESUME_HEADER: "Resume: every stored event after this id first, then live."}),
        Endpoint("GET", "/openapi.json", openapi, "This document", ANYONE,
                 {200: Answer("OpenAPI 3.1", media_type="application/json")}, "meta"),
    ]


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


def api_routes(host: Host, limiter: LoginLimiter) -> tuple[list[Route], dict[str, object]]:
    """The routes to mount at /api and the OpenAPI document that describes them."""
    table = endpoints(limiter)
    return [endpoint.route() for endpoint in table], openapi_document(table, "/api", host.public_url)
