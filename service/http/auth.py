"""Who is asking: API keys checked before any body is read, and the request's *owner*.

Every request has an owner, the name under which the scheduler queues its work, quotas count it
and logs and metrics show it (never the key itself):

* with API keys configured (``LABCRUNCH_API_KEYS``, a list of keys or a ``{"name": "key"}``
  map), the name of the key the request carries (``key-1``, ``key-2``... for a plain list);
* without keys, the client's address.

The rule for credentials, one for every protected route: send ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``. The key is compared exactly (no trimming: ``"Bearer k1 "`` is not ``k1``).
When both headers are sent they must carry the same key; different keys are refused, so a wrong
key can never hide behind a right one. The check runs in pure ASGI middleware before any route
reads the body: an unauthenticated 60 MB upload is answered 401 at once, unread.

A job's request sent again in-process after a restart (``labcrunch_service.jobs``) carries its
stored owner in the ASGI scope under :data:`REPLAY_OWNER_SCOPE_KEY`; only code inside the server
can set a scope key, so that owner is trusted as it stands.

Protected: ``/v1/...`` and ``/metrics``. Open: health (``/livez``, ``/readyz``), the web page and
its assets, and the API docs (``/docs``, ``/redoc``, ``/openapi.json``) unless
``LABCRUNCH_PUBLIC_DOCS=false``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from labcrunch_service.errors import Unauthorized
from labcrunch_service.http.problems import error_response

OWNER_SCOPE_KEY = "labcrunch.owner"
REPLAY_OWNER_SCOPE_KEY = "labcrunch.replay_owner"
_PROTECTED_PREFIXES = ("/v1/", "/metrics")
_DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")


def key_names(api_keys: Mapping[str, str] | list[str]) -> dict[bytes, str]:
    """The configured keys (UTF-8 bytes) → the names logs and metrics show."""
    if isinstance(api_keys, Mapping):
        return {key.encode(): name for name, key in api_keys.items()}
    return {key.encode(): f"key-{i}" for i, key in enumerate(api_keys, start=1)}


def is_protected(path: str, *, public_docs: bool) -> bool:
    if path.startswith(_PROTECTED_PREFIXES) or path == "/v1":
        return True
    return not public_docs and path.startswith(_DOCS_PATHS)


def _credentials(headers: Mapping[bytes, bytes]) -> list[bytes]:
    """The keys the request carries, as sent (latin-1 bytes on the wire, so non-ASCII is safe)."""
    sent = []
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        sent.append(token if scheme.lower() == b"bearer" else b"")
    if b"x-api-key" in headers:
        sent.append(headers[b"x-api-key"])
    return sent


def _match(sent: bytes, keys: Mapping[bytes, str]) -> str | None:
    found = None
    for key, name in keys.items():  # compare with every key: the time says nothing of which
        if secrets.compare_digest(sent, key):
            found = name
    return found


class AuthMiddleware:
    """Sets the owner of every HTTP request; refuses protected paths without a valid key (401)."""

    def __init__(self, app: ASGIApp, api_keys: Mapping[str, str] | list[str], *,
                 public_docs: bool = True) -> None:
        self.app = app
        self.keys = key_names(api_keys)
        self.public_docs = public_docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        owner = self._owner(scope)
        if owner is None:
            refusal = Unauthorized(
                "This server requires an API key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' (both only if they carry the same key).")
            await error_response(refusal, instance=scope["path"])(scope, receive, send)
            return
        scope[OWNER_SCOPE_KEY] = owner
        await self.app(scope, receive, send)

    def _owner(self, scope: Scope) -> str | None:
        """The owner's name, or None when the request must be refused."""
        if REPLAY_OWNER_SCOPE_KEY in scope:
            return scope[REPLAY_OWNER_SCOPE_KEY]
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if not self.keys:
            return address
        sent = _credentials(dict(scope["headers"]))
        names = {_match(key, self.keys) for key in sent}
        if len(names) == 1 and None not in names:
            return names.pop()
        if is_protected(scope["path"], public_docs=self.public_docs):
            return None
        return "anonymous"  # an open route (health, docs, the web page) without a valid key


def owner_of(request: Request) -> str:
    """The owner :class:`AuthMiddleware` set for this request."""
    return request.scope.get(OWNER_SCOPE_KEY, "anonymous")
