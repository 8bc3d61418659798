"""An authenticated HTTP session: log in, refresh before (or when) the access token expires.

An access token lives ``TUSD_PY_ACCESS_TOKEN_TTL`` seconds (15 minutes by default), which a
long upload outlives. With ``--username`` we hold the refresh token and trade it for a new pair
shortly before expiry, and once more if the server answers 401 anyway (a clock that drifted).
A bare ``--token`` cannot be renewed, so its 401 says how to get a lasting session.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

TIMEOUT = 30.0
REFRESH_MARGIN = 60.0
"""Refresh this many seconds before expiry (or after 90% of a shorter lifetime)."""


class ClientError(Exception):
    """A failure worth one line to the user: the server's own message, never a traceback."""


def server_message(status: int | None, content: bytes | str | None) -> str:
    """The ``error.message`` of our JSON error body, else the start of the body, else the status."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else (content or "")
    try:
        body = json.loads(text)
        message = body["error"]["message"]
        code = body["error"].get("code")
    except (ValueError, KeyError, TypeError, RecursionError):
        message, code = text.strip().splitlines()[0][:200] if text.strip() else "", None
    parts = [str(message)] if message else []
    if status is not None:
        parts.append(f"(HTTP {status}{', ' + str(code) if code else ''})")
    return " ".join(parts) or "no answer from the server"


def unreachable(base_url: str, exc: BaseException) -> ClientError:
    return ClientError(f"cannot reach {base_url} ({type(exc).__name__}); is the server running there?")


class Session:
    """The caller's identity on one server, and the ``Authorization`` header that proves it.

    ``headers`` is one dict, updated in place on refresh, so a tus client given it sends the
    new token on its next request.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.headers: dict[str, str] = {}
        self.user_id = ""
        self.username = ""
        self._refresh_token: str | None = None
        self._refresh_at = float("inf")

    # -- getting a token ---------------------------------------------------

    def use_token(self, token: str) -> None:
        self.headers["Authorization"] = f"Bearer {token}"
        self._whoami("the server refused the token")

    def login(self, username: str, password: str) -> None:
        response = self._post("/auth/login", {"username": username, "password": password})
        if response.status_code != 200:
            raise ClientError(
                f"login as {username!r} failed: {server_message(response.status_code, response.content)}"
            )
        self._take(response.json())
        self._whoami("login succeeded but the token was refused")

    @property
    def can_refresh(self) -> bool:
        return self._refresh_token is not None

    def refresh(self) -> None:
        """Trade the refresh token for a new pair (the old one is spent: rotation)."""
        if self._refresh_token is None:
            raise ClientError(
                "the access token expired or was refused; tokens last TUSD_PY_ACCESS_TOKEN_TTL seconds "
                "(900 by default): get a new one, or use --username, which renews it during long uploads"
            )
        response = self._post("/auth/refresh", {"refresh_token": self._refresh_token})
        if response.status_code != 200:
            raise ClientError(
                f"could not renew the session: {server_message(response.status_code, response.content)}"
            )
        self._take(response.json())

    def refresh_if_due(self) -> None:
        if self._refresh_token is not None and time.monotonic() >= self._refresh_at:
            self.refresh()

    def _take(self, pair: dict[str, Any]) -> None:
        self.headers["Authorization"] = f"Bearer {pair['access_token']}"
        self._refresh_token = str(pair["refresh_token"])
        lifetime = float(pair.get("expires_in", 900))
        self._refresh_at = time.monotonic() + max(lifetime - REFRESH_MARGIN, lifetime * 0.9)

    def _whoami(self, refused: str) -> None:
        response = self.request("GET", "/auth/me", retry_auth=False)
        if response.status_code != 200:
            raise ClientError(f"{refused}: {server_message(response.status_code, response.content)}")
        me = response.json()
        self.user_id, self.username = str(me["id"]), str(me["username"])

    # -- requests ----------------------------------------------------------

    def _post(self, path: str, body: dict[str, str]) -> requests.Response:
        try:
            return self.http.post(self.base_url + path, json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise unreachable(self.base_url, exc) from None

    def request(self, method: str, path: str, *, retry_auth: bool = True, **kwargs: Any) -> requests.Response:
        """One API request with the current token; a 401 is answered by one refresh and a retry."""
        self.refresh_if_due()
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            response = self.http.request(method, self.base_url + path, headers=dict(self.headers), **kwargs)
            if response.status_code == 401 and retry_auth and self.can_refresh:
                response.close()
                self.refresh()
                response = self.http.request(
                    method, self.base_url + path, headers=dict(self.headers), **kwargs
                )
        except requests.RequestException as exc:
            raise unreachable(self.base_url, exc) from None
        return response
