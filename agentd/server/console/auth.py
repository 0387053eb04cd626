"""Who is asking: users and roles from the config, sessions, CSRF tokens and the failed-login limit."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

ADMIN, REVIEWER, VIEWER = "admin", "reviewer", "viewer"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_decide(self) -> bool:
        return self.role in (ADMIN, REVIEWER)


def users_of(config: Any) -> list[tuple[User, str]]:
    """(user, token) for everyone the config lets in: ADMIN_TOKEN, REVIEWER_TOKENS, VIEWER_TOKENS."""
    found = [(User("admin", ADMIN), config.admin_token)] if config.admin_token else []
    found += [(User(name, REVIEWER), token) for name, token in config.reviewer_tokens]
    found += [(User(name, VIEWER), token) for name, token in config.viewer_tokens]
    return found


def authenticate(config: Any, given: str) -> User | None:
    """The user whose token is `given`: every token is compared, each in constant time."""
    given_bytes = given.encode("utf-8", "replace")
    match = None
    for user, token in users_of(config):
        if hmac.compare_digest(given_bytes, token.encode("utf-8")) and match is None:
            match = user
    return match


@dataclass
class Session:
    user: User
    csrf: str
    expires_at: float
    token_id: str = ""  # which token made it: a rotated token (SIGHUP) ends it


def token_id(token: str) -> str:
    """A token's fingerprint (never the token itself is kept with a session)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass
class Sessions:
    """Server-side sessions (a random id in the cookie); they end at logout, expiry or restart, and
    when the config (after SIGHUP) no longer lists the user with the token that made the session."""

    clock: Callable[[], float] = time.time
    ttl_s: float = SESSION_TTL_S
    _by_id: dict[str, Session] = field(default_factory=dict)

    def start(self, user: User, token: str) -> str:
        self._expire()
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = Session(user, secrets.token_urlsafe(32), self.clock() + self.ttl_s, token_id(token))
        return sid

    def get(self, sid: str | None, config: Any) -> Session | None:
        """The live session, or None; a user the config no longer lists with the same token is out."""
        session = self._by_id.get(sid or "")
        if session is None:
            return None
        if session.expires_at < self.clock() or not _still_valid(session, config):
            self._by_id.pop(sid or "", None)
            return None
        return session

    def end(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def _expire(self) -> None:
        now = self.clock()
        for sid in [s for s, v in self._by_id.items() if v.expires_at < now]:
            del self._by_id[sid]
        while len(self._by_id) >= MAX_SESSIONS:
            self._by_id.pop(next(iter(self._by_id)))


def _still_valid(session: Session, config: Any) -> bool:
    return any(user == session.user and hmac.compare_digest(token_id(token), session.token_id)
               for user, token in users_of(config))


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode("utf-8", "replace"))


@dataclass
class LoginLimiter:
    """At most `max_failures` failed logins per client address in `window_s`; then 429 until it passes."""

    clock: Callable[[], float] = time.time
    max_failures: int = 5
    window_s: float = 300.0
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after_s(self, remote: str) -> float:
        """0 when `remote` may try now, else the seconds until it may."""
        recent = self._recent(remote)
        if len(recent) < self.max_failures:
            return 0.0
        return max(1.0, recent[0] + self.window_s - self.clock())

    def failed(self, remote: str) -> int:
        recent = self._recent(remote)
        recent.append(self.clock())
        self._failures[remote] = recent
        if len(self._failures) > MAX_SESSIONS:
            self._failures.pop(next(iter(self._failures)))
        return len(recent)

    def succeeded(self, remote: str) -> None:
        self._failures.pop(remote, None)

    def _recent(self, remote: str) -> list[float]:
        cutoff = self.clock() - self.window_s
        return [t for t in self._failures.get(remote, []) if t > cutoff]
