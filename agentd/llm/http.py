"""The HTTP floor of the real providers: one pooled session, and openai-python's rules for failures."""
from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import aiohttp

from agentd.config import Config
from agentd.llm.base import ProviderError
from agentd.audit.redact import Redactor

CONNECTION_LIMIT = 32
MAX_BODY_BYTES = 32 * 1024 * 1024
RETRYABLE_STATUSES = frozenset({408, 409, 429})
CONFIG_PROBLEMS = {
    401: "the API rejected the credentials (401): check LLM_API_KEY",
    403: "the API refused access (403): check LLM_API_KEY and that it may use this model",
}


def as_int(value: Any) -> int:
    """A token count from a usage field; absent or odd values count as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tool_name(name: str) -> str:
    """A schema or tool name both APIs accept: [a-zA-Z0-9_-]{1,64}."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "result"


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, else `Retry-After` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass  # a malformed header counts as absent: fall through to Retry-After
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not seconds: perhaps an HTTP date
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _should_retry(headers: Mapping[str, str], transient: bool) -> bool:
    """openai-python: an explicit `x-should-retry` wins, else 408, 409, 429 and 5xx retry."""
    explicit = headers.get("x-should-retry", "").lower()
    return explicit == "true" if explicit in ("true", "false") else transient


def _error_text(body: bytes) -> str:
    """The server's own short error message, if its body has one."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type")
    return " ".join(str(error).split())[:200] if error else ""


class HTTPProvider:
    """Base of the OpenAI and Anthropic providers: POST JSON, get JSON or a ProviderError."""

    name = "http"
    prompt_overhead_tokens = 0

    def __init__(self, config: Config):
        self.base_url = config.llm_base_url.rstrip("/")
        self.api_key = config.llm_api_key
        self.connection_limit = max(CONNECTION_LIMIT, config.concurrency)
        self._redact = Redactor((*config.secrets, config.llm_api_key))
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # never fewer connections than runs in flight: each may be waiting on the model
            connector = aiohttp.TCPConnector(limit=self.connection_limit)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def error(self, message: str, **kwargs: Any) -> ProviderError:
        """A ProviderError whose message carries no secret, whatever the server wrote."""
        return ProviderError(self._redact.text(f"{self.name}: {message}"), **kwargs)

    async def post_json(self, path: str, headers: dict[str, str], body: dict[str, Any],
                        timeout_s: float) -> dict[str, Any]:
        """The decoded JSON object of a 2xx answer; any failure as a classified ProviderError."""
        try:
            async with self._client().post(self.base_url + path, json=body, headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                status, answer_headers = response.status, response.headers
                raw = await _read_capped(response)
        except TimeoutError:  # asyncio.TimeoutError and aiohttp.ServerTimeoutError alike
            raise self.error(f"no answer within {timeout_s:g} s", kind="timeout", retryable=True,
                             cost_unknown=True) from None
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent, nothing billed
            raise self.error(f"cannot connect ({type(exc).__name__})", kind="network", retryable=True) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise self.error(f"connection lost ({type(exc).__name__})", kind="connection_lost", retryable=True,
                             cost_unknown=True) from None
        if not 200 <= status < 300:
            raise self._status_error(status, answer_headers, raw)
        try:  # a 2xx body we cannot read has no usage we can read: the call may be billed, amount unknown
            data = json.loads(raw)
        except ValueError:
            raise self.malformed(f"the HTTP {status} body is not JSON", usage_known=False) from None
        if not isinstance(data, dict):
            raise self.malformed("the JSON body is not an object", usage_known=False)
        return data

    def _status_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        detail = _error_text(raw)
        suffix = f": {detail}" if detail else ""
        if status in CONFIG_PROBLEMS:
            return self.error(CONFIG_PROBLEMS[status] + suffix, status=status, kind="model")
        transient = status in RETRYABLE_STATUSES or status >= 500  # the API's trouble, not the request's
        retryable = _should_retry(headers, transient)
        return self.error(f"HTTP {status}{suffix}", status=status, kind="network" if transient else "model",
                          retryable=retryable, retry_after_s=retry_after_s(headers) if retryable else None)

    def malformed(self, what: str, tokens_in: int = 0, tokens_out: int = 0, usage_known: bool = True) -> ProviderError:
        """A 2xx answer without the fields the wire format promises: retried, its tokens still metered."""
        return self.error(f"malformed answer: {what}", kind="malformed", retryable=True,
                          tokens_in=tokens_in, tokens_out=tokens_out, cost_unknown=not usage_known)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The body, refusing one larger than MAX_BODY_BYTES (a broken or hostile server)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise aiohttp.ClientPayloadError(f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

