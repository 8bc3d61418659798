"""What the auth package needs to know, handed in by the application."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuthConfig:
    secret: bytes
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 86400
    ticket_ttl: int = 60
    argon2_profile: str = "default"
    login_rate_limit: str = "10/minute"
    issuer: str = "tusd-py"
    audience: str = "tusd-py"
