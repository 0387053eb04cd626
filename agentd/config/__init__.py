"""The one read-only Config object: built once from the environment and an env file."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

from dotenv import dotenv_values

from agentd.audit.redact import mask_urls
from agentd.config.values import (_bool, _choice, _float, _host, _int, _list, _ms_as_s, _named_tokens, _otlp_url,
                                  _pairs, _services, _text, _url, _usd, is_secret_name, looks_like_secret,
                                  secret_values)
from agentd.durable import crash
from agentd.llm import prices
from agentd.spool import layout

PROVIDERS = ("offline", "openai", "anthropic")

PROVIDER_DEFAULTS = {
    "offline": ("", "offline-rules"),
    "openai": ("https://api.openai.com/v1", "gpt-4o-mini"),
    "anthropic": ("https://api.anthropic.com", "claude-3-5-haiku-latest"),
}


class ConfigError(Exception):
    """A bad configuration value; the message names the variable and never its secret value."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Config:
    home: Path
    health_host: str = "127.0.0.1"
    health_port: int = 8080
    concurrency: int = 4
    max_file_bytes: int = 26_214_400
    llm_provider: str = "offline"
    llm_base_url: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_model: str = "offline-rules"
    llm_fallback_models: tuple[str, ...] = ()
    llm_timeout_s: float = 60.0
    llm_max_output_tokens: int = 1024
    llm_max_attempts: int = 3
    llm_max_calls_per_run: int = 12
    llm_retry_after_cap_s: float = 30.0
    llm_slow_call_s: float = 20.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    price_input_per_mtok: Decimal | None = None
    price_output_per_mtok: Decimal | None = None
    max_cost_per_run: Decimal = Decimal("0.50")
    daily_budget_usd: Decimal = Decimal("0")
    allowed_services: frozenset[str] = frozenset()
    admin_token: str = field(default="", repr=False)
    dedupe: bool = True
    workflows: tuple[str, ...] = ()
    settle_s: float = 1.0
    rescan_s: float = 10.0
    stale_open_s: float = 60.0
    watch_mode: str = "inotify"
    drain_timeout_s: float = 30.0
    step_timeout_s: float = 300.0
    extract_timeout_s: float = 60.0
    extract_memory_mb: int = 512
    fsync: bool = True
    log_format: str = "auto"
    log_level: str = "info"
    review_confidence: float = 0.5
    redact_pii: bool = False
    audit_max_bytes: int = 64 * 1024 * 1024
    audit_keep_days: int = 0
    audit_hmac_key: str = field(default="", repr=False)
    probe_interval_s: float = 300.0
    webhook_url: str = ""
    db_path: str = ""
    tesseract: str = "tesseract"
    tool_timeout_s: float = 60.0
    agent_max_steps: int = 8
    agent_max_tool_calls: int = 8
    max_resumes: int = 3
    crash_at: str = ""  # tests only: the named point where the daemon SIGKILLs itself
    reviewer_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    viewer_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    review_lease_s: float = 600.0
    review_sla_s: float = 86400.0
    review_base_url: str = ""
    otel_endpoint: str = ""
    otel_traces_endpoint: str = ""
    otel_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    otel_service_name: str = "agentd"
    otel_resource_attributes: tuple[tuple[str, str], ...] = ()
    otel_capture_content: bool = False
    otel_timeout_s: float = 10.0
    otel_batch_spans: int = 512
    otel_schedule_delay_s: float = 5.0
    otel_retry_max_s: float = 30.0
    secrets: tuple[str, ...] = field(default=(), repr=False)
    source: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    # -- derived paths -------------------------------------------------------------
    @property
    def incoming(self) -> Path:
        return self.home / layout.INCOMING

    @property
    def processing(self) -> Path:
        return self.home / layout.PROCESSING

    @property
    def state_dir(self) -> Path:
        return self.home / layout.STATE

    @property
    def logs_dir(self) -> Path:
        return self.home / layout.LOGS

    @property
    def data_dir(self) -> Path:
        return self.home / layout.DATA

    def terminal(self, outcome: str) -> Path:
        return layout.terminal_dir(self.home, outcome)

    def price(self, model: str) -> prices.Price:
        """USD per million tokens for `model`: the overrides win over the table."""
        base = prices.lookup(self.llm_provider, model)
        if self.price_input_per_mtok is None and self.price_output_per_mtok is None:
            if base is None:
                raise ConfigError("LLM_MODEL", f"no known price for model {model!r}; "
                                  "set LLM_PRICE_INPUT_PER_MTOK and LLM_PRICE_OUTPUT_PER_MTOK")
            return base
        return prices.Price(
            input=self.price_input_per_mtok if self.price_input_per_mtok is not None
            else (base.input if base else Decimal(0)),
            output=self.price_output_per_mtok if self.price_output_per_mtok is not None
            else (base.output if base else Decimal(0)),
            cached_input=base.cached_input if base else None,
        )

    @property
    def traces_url(self) -> str:
        """Where spans go: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else <endpoint>/v1/traces; "" for none."""
        if self.otel_traces_endpoint:
            return self.otel_traces_endpoint
        return f"{self.otel_endpoint}/v1/traces" if self.otel_endpoint else ""

    def models(self) -> tuple[str, ...]:
        return (self.llm_model, *self.llm_fallback_models)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


# -- parsers: each returns the value or raises ValueError with a short reason ---------

VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "AGENTD_HOME": ("home", lambda raw: Path(raw.strip() or "./var")),
    "HEALTH_HOST": ("health_host", _host),
    "HEALTH_PORT": ("health_port", _int(0, 65535)),
    "AGENTD_CONCURRENCY": ("concurrency", _int(1, 1024)),
    "AGENTD_MAX_FILE_BYTES": ("max_file_bytes", _int(1, 1 << 40)),
    "LLM_PROVIDER": ("llm_provider", _choice(*PROVIDERS)),
    "LLM_BASE_URL": ("llm_base_url", _url),
    "LLM_API_KEY": ("llm_api_key", _text),
    "LLM_MODEL": ("llm_model", _text),
    "LLM_FALLBACK_MODELS": ("llm_fallback_models", _list),
    "LLM_TIMEOUT_S": ("llm_timeout_s", _float(0.1, 3600)),
    "LLM_MAX_OUTPUT_TOKENS": ("llm_max_output_tokens", _int(1, 200_000)),
    "LLM_MAX_ATTEMPTS": ("llm_max_attempts", _int(1, 10)),
    "LLM_MAX_CALLS_PER_RUN": ("llm_max_calls_per_run", _int(1, 1000)),
    "LLM_RETRY_AFTER_CAP_S": ("llm_retry_after_cap_s", _float(0, 3600)),
    "LLM_SLOW_CALL_S": ("llm_slow_call_s", _float(0.01, 3600)),
    "LLM_BREAKER_FAILURES": ("breaker_failures", _int(1, 1000)),
    "LLM_BREAKER_RESET_S": ("breaker_reset_s", _float(0.1, 86400)),
    "LLM_PRICE_INPUT_PER_MTOK": ("price_input_per_mtok", _usd),
    "LLM_PRICE_OUTPUT_PER_MTOK": ("price_output_per_mtok", _usd),
    "MAX_COST_PER_RUN": ("max_cost_per_run", _usd),
    "DAILY_BUDGET_USD": ("daily_budget_usd", _usd),
    "ALLOWED_SERVICES": ("allowed_services", _services),
    "ADMIN_TOKEN": ("admin_token", _text),
    "AGENTD_DEDUPE": ("dedupe", _bool),
    "AGENTD_WORKFLOWS": ("workflows", _list),
    "AGENTD_SETTLE_S": ("settle_s", _float(0, 3600)),
    "AGENTD_RESCAN_S": ("rescan_s", _float(0.05, 86400)),
    "AGENTD_STALE_OPEN_S": ("stale_open_s", _float(0, 86400)),
    "AGENTD_WATCH_MODE": ("watch_mode", _choice("inotify", "poll")),
    "AGENTD_DRAIN_TIMEOUT_S": ("drain_timeout_s", _float(0, 3600)),
    "AGENTD_STEP_TIMEOUT_S": ("step_timeout_s", _float(0.01, 86400)),
    "AGENTD_EXTRACT_TIMEOUT_S": ("extract_timeout_s", _float(0.05, 86400)),
    "AGENTD_EXTRACT_MEMORY_MB": ("extract_memory_mb", _int(128, 1 << 20)),
    "AGENTD_FSYNC": ("fsync", _bool),
    "AGENTD_LOG_FORMAT": ("log_format", _choice("auto", "json", "console")),
    "AGENTD_LOG_LEVEL": ("log_level", _choice("debug", "info", "warning", "error")),
    "AGENTD_REVIEW_CONFIDENCE": ("review_confidence", _float(0, 1)),
    "AGENTD_REDACT_PII": ("redact_pii", _bool),
    "AGENTD_AUDIT_MAX_BYTES": ("audit_max_bytes", _int(4096, 1 << 40)),
    "AGENTD_AUDIT_KEEP_DAYS": ("audit_keep_days", _int(0, 36500)),
    "AUDIT_HMAC_KEY": ("audit_hmac_key", _text),
    "AGENTD_PROBE_INTERVAL_S": ("probe_interval_s", _float(0, 86400)),
    "NOTIFY_WEBHOOK_URL": ("webhook_url", _url),
    "DB_QUERY_PATH": ("db_path", _text),
    "TESSERACT_CMD": ("tesseract", _text),
    "TOOL_TIMEOUT_S": ("tool_timeout_s", _float(0.1, 3600)),
    "AGENT_MAX_STEPS": ("agent_max_steps", _int(1, 100)),
    "AGENT_MAX_TOOL_CALLS": ("agent_max_tool_calls", _int(0, 100)),
    "AGENTD_MAX_RESUMES": ("max_resumes", _int(0, 1000)),
    "AGENTD_CRASH_AT": ("crash_at", _choice("", *crash.POINTS)),
    "REVIEWER_TOKENS": ("reviewer_tokens", _named_tokens),
    "VIEWER_TOKENS": ("viewer_tokens", _named_tokens),
    "REVIEW_LEASE_S": ("review_lease_s", _float(1, 86400)),
    "REVIEW_SLA_S": ("review_sla_s", _float(1, 365 * 86400)),
    "REVIEW_BASE_URL": ("review_base_url", _url),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("otel_endpoint", lambda raw: _otlp_url(raw).rstrip("/")),
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ("otel_traces_endpoint", _otlp_url),
    "OTEL_EXPORTER_OTLP_HEADERS": ("otel_headers", _pairs("header")),
    "OTEL_SERVICE_NAME": ("otel_service_name", _text),
    "OTEL_RESOURCE_ATTRIBUTES": ("otel_resource_attributes", _pairs("key")),
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": ("otel_capture_content", _bool),
    "OTEL_EXPORTER_OTLP_TIMEOUT": ("otel_timeout_s", _ms_as_s(1, 600_000)),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ("otel_batch_spans", _int(1, 100_000)),
    "OTEL_BSP_SCHEDULE_DELAY": ("otel_schedule_delay_s", _ms_as_s(1, 3_600_000)),
    "AGENTD_OTLP_RETRY_MAX_S": ("otel_retry_max_s", _float(0.01, 3600)),
}


def read_environment(env_file: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The merged variables: the env file first, the real environment wins."""
    environ = os.environ if environ is None else environ
    merged: dict[str, str] = {}
    path = Path(env_file) if env_file else Path(".env")
    if env_file and not path.is_file():
        raise ConfigError("--env-file", f"no such file: {path}")
    if path.is_file():
        try:
            values = dotenv_values(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--env-file", f"cannot read {path}: {exc.__class__.__name__}") from None
        merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(environ)
    return merged


def load(env_file: str | os.PathLike[str] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Build and validate the Config; raise ConfigError naming the first bad variable."""
    values = read_environment(env_file, environ)
    kwargs: dict[str, Any] = {"home": Path("./var")}
    for name, (attr, parse) in VARIABLES.items():
        raw = values.get(name)
        if raw is None or (raw.strip() == "" and attr not in ("home",)):
            continue
        try:
            kwargs[attr] = parse(raw)
        except ValueError as exc:
            shown = "" if is_secret_name(name) else f", got {mask_urls(raw.strip())[:60]!r}"
            raise ConfigError(name, f"{exc}{shown}") from None

    provider = kwargs.get("llm_provider", "offline")
    base_url, model = PROVIDER_DEFAULTS[provider]
    kwargs.setdefault("llm_base_url", base_url)
    if provider == "offline":
        kwargs["llm_model"] = kwargs.get("llm_model") or model
    kwargs.setdefault("llm_model", model)
    kwargs["home"] = find_home(values, env_file, environ)
    found = {s for k, v in values.items() for s in secret_values(k, v)}
    found |= {token for attr in ("reviewer_tokens", "viewer_tokens") for _, token in kwargs.get(attr, ())}
    found |= {value for _, value in kwargs.get("otel_headers", ())}  # each header's value alone too
    secrets = tuple(sorted({v for v in found if looks_like_secret(v)}, key=len, reverse=True))
    kwargs["secrets"] = secrets
    kwargs["source"] = {k: v for k, v in values.items() if k in VARIABLES}
    config = Config(**kwargs)
    _check(config)
    return config


def find_home(values: Mapping[str, str], env_file: str | os.PathLike[str] | None = None,
              environ: Mapping[str, str] | None = None) -> Path:
    """The one home lookup: AGENTD_HOME from the real environment (relative to the working folder)
    or from the env file (a relative path is relative to the file's folder, so the answer is the same
    from any folder); else ./var. Whether a state-reading command may use a missing ./var is the CLI's call."""
    environ = os.environ if environ is None else environ
    raw = values.get("AGENTD_HOME", "").strip()
    home = Path(raw or "./var")
    if raw and "AGENTD_HOME" not in environ and not home.is_absolute():  # it came from the env file
        home = (Path(env_file) if env_file else Path(".env")).parent / home
    return Path(os.path.abspath(home))


def home_given(config: Config) -> bool:
    """AGENTD_HOME was set (in the environment or the env file), not the ./var default."""
    return bool(config.source.get("AGENTD_HOME", "").strip())


def _check(config: Config) -> None:
    """Cross-field rules that single parsers cannot see."""
    if config.llm_provider in ("openai", "anthropic"):
        if not config.llm_base_url:
            raise ConfigError("LLM_BASE_URL", f"is required for provider {config.llm_provider}")
        for model in config.models():
            config.price(model)
    if config.llm_provider == "anthropic" and not config.llm_api_key:
        raise ConfigError("LLM_API_KEY", "is required for provider anthropic")
    if config.llm_provider == "openai" and not config.llm_api_key \
            and config.llm_base_url.startswith("https://api.openai.com"):
        raise ConfigError("LLM_API_KEY", "is required for api.openai.com")
    if "notification" in config.allowed_services and not config.webhook_url:
        raise ConfigError("NOTIFY_WEBHOOK_URL", "is required when ALLOWED_SERVICES has notification")
    if "db-query" in config.allowed_services and not config.db_path:
        raise ConfigError("DB_QUERY_PATH", "is required when ALLOWED_SERVICES has db-query")
    reviewers = {name for name, _ in config.reviewer_tokens}
    both = sorted(reviewers & {name for name, _ in config.viewer_tokens})
    if both:
        raise ConfigError("VIEWER_TOKENS", f"{both[0]!r} is also a reviewer in REVIEWER_TOKENS")
