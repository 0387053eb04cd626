"""Upper bounds on a request's input tokens: an offline BPE tokenizer where one fits the model,
else the byte bound the gateway reserves with."""
from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from typing import Any

from agentd.llm.base import LLMRequest, token_bound

# Chat framing: each message costs a few tokens of role markers (OpenAI documents 3-4);
# the reply is primed with 3. We count 8 per message and 32 for the request, which covers
# the structured-output wrapper around the schema as well.
PER_MESSAGE = 8
PER_REQUEST = 32


@dataclass(frozen=True)
class Counter:
    """Counts tokens of a text; `name` says how (an encoding name, or "bytes")."""

    name: str
    encoding: Any = None

    def count(self, text: str) -> int:
        if self.encoding is None:
            return len(text.encode("utf-8", "surrogatepass"))
        return len(self.encoding.encode(text))


O200K_PREFIXES = ("gpt-5", "gpt-4.5", "o1", "o3", "o4")  # newer than the library's model table


def _library() -> Any:
    """bpe_openai bundles o200k_base and cl100k_base in its wheel: no download at run time."""
    with warnings.catch_warnings():  # it loads its data with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import bpe_openai
        except ImportError:
            return None
    return bpe_openai


@functools.lru_cache(maxsize=8)
def encoding(name: str) -> Any:
    """An encoding by name (o200k_base, cl100k_base), or None when the library is missing."""
    library = _library()
    if library is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return library.get_encoding(name)


@functools.lru_cache(maxsize=8)
def _encoding(model: str) -> Any:
    library = _library()
    if library is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return library.encoding_for_model(model)
        except (KeyError, ValueError):
            return encoding("o200k_base") if model.startswith(O200K_PREFIXES) else None


def counter_for(provider: str, model: str) -> Counter:
    """The model's own tokenizer when agentd can run it offline (OpenAI models), else bytes.

    Byte-level BPE never makes more tokens than UTF-8 bytes, so "bytes" is a bound for every
    model (Anthropic's tokenizer is not published; local models vary).
    """
    if provider == "openai":
        encoding = _encoding(model)
        if encoding is not None:
            return Counter(str(getattr(encoding, "name", "bpe")), encoding)
    return Counter("bytes")


def request_texts(request: LLMRequest) -> list[str]:
    """Every text the providers put on the wire for this request, one per message or part."""
    texts = [request.system, request.user_message(), json.dumps(request.schema)]
    if request.tools:
        texts.append(json.dumps(request.tools))
    for turn in request.history:
        texts.append(str(turn.get("content") or ""))
        if turn.get("tool_calls"):
            texts.append(json.dumps(turn["tool_calls"], default=str))
    return texts


def input_bound(request: LLMRequest, counter: Counter) -> int:
    """At most this many input tokens are billed for `request`."""
    texts = request_texts(request)
    messages = 2 + len(request.history)
    return sum(counter.count(t) for t in texts) + PER_MESSAGE * messages + PER_REQUEST


def reserved_tokens(request: LLMRequest) -> int:
    """The input tokens the gateway reserves against MAX_COST_PER_RUN before it sends `request`
    (agentd.llm.gateway: the byte bound of the same prompt)."""
    prompt = request.system + request.user_message() + json.dumps(request.schema) + \
        json.dumps(request.tools) + "".join(str(m.get("content", "")) for m in request.history)
    return token_bound(prompt, 3 + len(request.history))
