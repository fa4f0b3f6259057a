"""Settings: environment (``ONCEONLY_*``) over a TOML file over defaults.

The embedded default needs no configuration at all. Production mode refuses, at
start-up, every default that is only safe on a developer's machine.

A list setting is written in the environment the way an operator writes it in an
environment file, ``ONCEONLY_HOLIDAYS=2026-12-24,2026-12-25`` (commas, spaces or
both between the values), or as a JSON array, ``["2026-12-24", "2026-12-25"]``; in
the TOML file it is a TOML array.
"""

import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "ONCEONLY_CONFIG"
AUDIT_ORIGIN_FILE = "audit-origin"
"""Under ``keys_dir``: the origin the audit log was first given, which it keeps."""


def _printable_origin(origin: str) -> str:
    """The audit log's origin is the first line of every signed checkpoint: a control
    character (which a signed note may not hold, C2SP signed-note) would make every
    checkpoint round fail, and the hub never ready."""
    if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in origin):
        raise ValueError(
            "the audit log's origin may not contain control characters (it is the first"
            " line of every signed checkpoint): use a name such as hub.example.gov/audit"
        )
    try:
        origin.encode()
    except UnicodeEncodeError:
        raise ValueError("the audit log's origin is not valid UTF-8") from None
    return origin


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONCEONLY_", extra="forbid", frozen=True)

    mode: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under data_dir"
    )
    read_database_url: str | None = Field(
        default=None,
        description=(
            "A read replica of database_url (a PostgreSQL streaming standby) for auditors'"
            " entry searches and exports; default: database_url itself"
        ),
    )
    issuer: str = Field(
        default="http://127.0.0.1:8000",
        description="The hub's public base URL: the OAuth issuer and token audience",
    )
    auto_migrate: bool | None = Field(
        default=None, description="Apply migrations at start-up (default: yes in development)"
    )
    access_token_lifetime: int = Field(default=300, ge=30, le=3600)
    request_token_lifetime: int = Field(default=60, ge=10, le=120)
    clock_skew: int = Field(default=10, ge=0, le=60)
    owner_timeout: float = Field(default=5.0, gt=0, le=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    head_timeout: float = Field(
        default=10.0,  # onceonly.adapters.serving.HEAD_TIMEOUT
        gt=0,
        le=300,
        description="Seconds a connection has to send a whole request head, from connecting"
        " (the first) or from its first byte (a later one); then 408 and closed (decision 0066)",
    )
    max_json_depth: int = Field(default=32, ge=4, le=256)
    audit_batch_size: int = Field(default=256, ge=1, le=10_000)
    audit_probe_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between the audit writer's probes of its table while its commits"
        " fail (the writer counts as ready in /readyz again after the first that succeeds)",
    )
    # --- audit checkpoints (issue 6) ---
    checkpoint_interval: float = Field(
        default=1.0, gt=0, le=3600, description="Seconds between signed audit checkpoints"
    )
    audit_origin: Annotated[str, AfterValidator(_printable_origin)] | None = Field(
        default=None,
        pattern=r"^[^\s+]+$",
        description="The audit log's checkpoint origin, fixed for the log's life (auditors pin"
        " it); required in production. Development default: the origin the data directory's"
        " log was first given, or the issuer's host (no port) and path + /audit",
    )
    # --- end audit checkpoints ---
    # --- change events ---
    event_poll_interval: float = Field(default=0.5, gt=0, le=60)
    event_batch_size: int = Field(default=50, ge=4, le=1000)  # a subscriber: a quarter (0088)
    event_max_attempts: int = Field(default=10, ge=1, le=100)
    event_retry_base: float = Field(default=1.0, gt=0, le=3600)
    event_retry_cap: float = Field(default=300.0, gt=0, le=86400)
    event_lease: float = Field(default=30.0, gt=0, le=3600)
    # --- end change events ---
    citizen_portal_clients: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Client ids allowed to read a citizen's access log (the citizen view)",
    )
    # --- authorization (issue 4) ---
    require_dpop: bool = Field(
        default=True,
        description="Record and event endpoints accept only sender-constrained tokens (RFC 9449)",
    )
    dpop_nonce: bool = Field(
        default=False, description="Require server-provided DPoP nonces (RFC 9449 §8, §9)"
    )
    dpop_nonce_lifetime: int = Field(default=300, ge=30, le=3600)
    dpop_proof_lifetime: int = Field(default=60, ge=5, le=300)
    tls_client_cert_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Header with the client certificate (URL-encoded PEM) set by the TLS proxy;"
        " enables RFC 8705 self_signed_tls_client_auth and certificate-bound tokens",
    )
    signing_key_reload_interval: float = Field(default=5.0, gt=0, le=60)
    # --- the OAuth endpoints' rate limits, per hub process (decision 0051) ---
    token_client_burst: int = Field(
        default=300,
        ge=1,
        le=1_000_000,
        description="Access tokens one client may get from one hub process in a burst;"
        " then token_client_per_minute (429 slow_down beyond)",
    )
    token_client_per_minute: float = Field(
        default=300, gt=0, le=1_000_000, description="Sustained tokens per client per process"
    )
    token_address_burst: int = Field(
        default=300,
        ge=1,
        le=1_000_000,
        description="Refused token, introspection and revocation requests one source address"
        " may make to one hub process in a burst; then token_address_per_minute"
        " (429 slow_down beyond)",
    )
    token_address_per_minute: float = Field(
        default=300,
        gt=0,
        le=1_000_000,
        description="Sustained refused token, introspection and revocation requests per"
        " address per process",
    )
    token_limit_keys: int = Field(
        default=10_000,
        ge=100,
        le=10_000_000,
        description="Clients, and addresses (and IPv6 networks), whose token budgets a"
        " process keeps (each); only a budget that has refilled is forgotten, and while none"
        " can be, a new source is refused",
    )
    audit_subject_searches_per_hour: int = Field(
        default=120,
        ge=1,
        le=1_000_000,
        description="Different subjects (an identifier turned into its pseudonym) one"
        " person may search the audit log by in any hour, counted in the database for every"
        " hub process and replica together: the query, an export, the console's search,"
        " each subject once an hour whatever the page; then 429 subject-searches-throttled",
    )
    audit_unnamed_refusals_per_minute: int = Field(
        default=300,
        ge=0,
        le=1_000_000,
        description="Refusals that name nobody (an anonymous request, a token or sign-in"
        " that did not hold) each source address (an IPv6 /64) may have written to the"
        " audit log a minute, per process, after a burst of twice that; past it they are"
        " counted (onceonly_audit_unnamed_refusals_unlogged_total), and one a minute is"
        " written; 0: every one is written",
    )
    # --- the hub's own outgoing TLS: owners' adapters and subscribers (issue 15) ---
    adapter_ca_file: Path | None = Field(
        default=None,
        description="PEM bundle of CAs trusted for adapters' https:// URLs, besides the"
        " usual public ones (a department's internal CA)",
    )
    adapter_client_cert_file: Path | None = Field(
        default=None,
        description="The hub's client certificate (PEM, chain) presented to adapters that"
        " ask for one: mutual TLS between the hub and the departments",
    )
    adapter_client_key_file: Path | None = Field(
        default=None, description="The private key of adapter_client_cert_file (PEM)"
    )
    # --- end authorization ---
    # --- people and access requests (issue 5) ---
    session_lifetime: int = Field(
        default=3600, ge=60, le=12 * 3600, description="Seconds a person's sign-in lasts"
    )
    sign_in_max_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Free failed sign-ins of one account from one source within the window;"
        " then each attempt from there waits (docs/people.md, Throttling)",
    )
    sign_in_address_max_failures: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Failed sign-ins from one address within the window",
    )
    sign_in_window: int = Field(default=900, ge=10, le=86400, description="Seconds")
    password_checks_at_once: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Password checks (argon2id) one hub process runs at once, on threads of"
        " their own (decision 0063)",
    )
    password_checks_waiting: int = Field(
        default=8,
        ge=0,
        le=1000,
        description="Sign-ins (and password confirmations) that may wait for a password check"
        " in one process; beyond, 429 sign-in-throttled (decision 0063)",
    )
    oidc_calls_at_once: int = Field(
        default=4,
        ge=1,
        le=64,
        description="OpenID Connect sign-ins one hub process lets talk to each provider at once"
        " (the token endpoint, its keys; decision 0068)",
    )
    oidc_calls_waiting: int = Field(
        default=16,
        ge=0,
        le=1000,
        description="OpenID Connect sign-ins that may wait for their turn with a provider in"
        " one process; beyond, 429 sign-in-throttled (decision 0068)",
    )
    # RFC 9106 §4, second recommended option (argon2id, t=3, m=64 MiB): production's floor.
    password_time_cost: int = Field(
        default=3, ge=1, le=20, description="argon2id passes over memory for a password hash"
    )
    password_memory_kib: int = Field(
        default=65536, ge=64, le=4 * 1024 * 1024, description="argon2id memory (KiB) per hash"
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without the bearer token of keys/metrics-token: only where"
        " the network keeps everyone but Prometheus away from the hub's port (decision 0063)",
    )
    adapters_on_loopback: bool = Field(
        default=False,
        description="Let a production hub register adapter URLs on this machine's loopback"
        " (127.0.0.0/8, ::1, localhost): for a hub and its adapters on one host, as in a"
        " pilot or a test of the deployment. Link-local hosts stay refused (decision 0060)",
    )
    break_glass_token: bool = Field(
        default=True,
        description="Accept the bootstrap administrator token (keys/admin-token) as the"
        " break-glass credential; turn off once people administer the hub",
    )
    purposes_file: Path | None = Field(
        default=None,
        description="TOML list of purpose codes; default: config/purposes.toml of the project",
    )
    answer_working_days: int = Field(
        default=10, ge=1, le=250, description="Working days an owner has to answer a request"
    )
    holidays: Annotated[list[date], NoDecode] = Field(
        default_factory=list, description="Public holidays that are not working days"
    )
    grant_max_days: int = Field(
        default=365,
        ge=0,
        le=3650,
        description="Days a grant lasts at most from its approval (valid_until is capped);"
        " 0: no maximum, refused in production (docs/access.md)",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="OpenID Connect provider's issuer URL, for people's sign-in in production",
    )
    oidc_client_id: str | None = Field(default=None, max_length=255)
    oidc_client_secret: str | None = Field(default=None, max_length=1000)
    citizen_oidc_issuer: str | None = Field(
        default=None,
        description="OpenID Connect provider's issuer URL for citizens' sign-in to the"
        " console's 'who used my data' page (decision 0032); unset: no citizen page",
    )
    citizen_oidc_client_id: str | None = Field(default=None, max_length=255)
    citizen_oidc_client_secret: str | None = Field(default=None, max_length=1000)
    citizen_identifier_claim: str = Field(
        default="sub",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="The ID token claim that holds the person's identifier (the subject"
        " the departments' records are about)",
    )
    citizen_session_lifetime: int = Field(
        default=900, ge=60, le=3600, description="Seconds a citizen's sign-in lasts"
    )
    # --- end people and access requests ---
    # --- the efficiency report (issue 14, docs/efficiency.md) ---
    report_threshold: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Counts from 1 to this minus 1 are suppressed in the efficiency report",
    )
    report_minutes_saved: dict[str, Annotated[float, Field(ge=0, le=100_000)]] = Field(
        default_factory=dict,
        description="Citizen minutes one exchange of an item saves (item id: minutes), as a"
        " JSON object in the environment or a table in the TOML file",
    )
    report_minutes_saved_default: float = Field(
        default=15.0,
        ge=0,
        le=100_000,
        description="Minutes saved per exchange of an item not in report_minutes_saved",
    )
    report_rollup_interval: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds between the efficiency report's roll-ups of new audit entries",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL (in any case)",
    )
    log_json: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            if Path(config_file).is_dir():
                raise ValueError(f"{CONFIG_ENV}={config_file}: a directory, not a TOML file")
            if not Path(config_file).is_file():
                raise ValueError(f"{CONFIG_ENV}={config_file}: no such file")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            except ValueError as error:  # tomllib.TOMLDecodeError: it names no file
                raise ValueError(f"{CONFIG_ENV}={config_file}: not TOML: {error}") from None
        return tuple(sources)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: Any) -> Any:
        """``info`` is ``INFO``, as Python's logging reads a level; its other names,
        ``WARN`` and ``FATAL``, are ``WARNING`` and ``CRITICAL`` (helper-185: a setting
        Python's logging took was refused once the level became a closed list)."""
        if not isinstance(value, str):
            return value
        level = value.strip().upper()
        return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)

    @field_validator("citizen_portal_clients", "holidays", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """A list from the environment: a JSON array, or values between commas or spaces."""
        if not isinstance(value, str):
            return value  # from TOML or from code: already a list
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("neither a JSON array nor values separated by commas") from None
        return [item for item in re.split(r"[,\s]+", text) if item]

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> "Settings":
        # A delivery is leased for event_lease while it is sent (owner_timeout at most),
        # and its outcome written: a shorter lease lets another replica claim it and
        # send it too (helper-148's review).
        if self.event_lease <= 2 * self.owner_timeout:
            raise ValueError(
                f"event_lease ({self.event_lease:g} s) must be more than twice owner_timeout"
                f" ({self.owner_timeout:g} s): a delivery's lease must outlast its call, or"
                " another hub process sends it too"
            )
        return self

    @model_validator(mode="after")
    def _client_certificate_whole(self) -> "Settings":
        if (self.adapter_client_cert_file is None) != (self.adapter_client_key_file is None):
            raise ValueError("adapter_client_cert_file and adapter_client_key_file go together")
        return self

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> "Settings":
        if self.mode != "production":
            return self
        problems = []
        if not self.issuer.startswith("https://"):
            problems.append("issuer must be an https:// URL")
        if self.database_url is None or self.database_url.startswith("sqlite"):
            problems.append("database_url must name a PostgreSQL database")
        if self.read_database_url is not None and not self.read_database_url.startswith(
            "postgresql"
        ):
            problems.append("read_database_url must name a PostgreSQL standby")
        if self.oidc_issuer is not None and not self.oidc_issuer.startswith("https://"):
            problems.append("oidc_issuer must be an https:// URL")
        citizen_issuer = self.citizen_oidc_issuer
        if citizen_issuer is not None and not citizen_issuer.startswith("https://"):
            problems.append("citizen_oidc_issuer must be an https:// URL")
        if self.grant_max_days == 0:
            problems.append("grant_max_days must be at least 1 (grants must expire)")
        if self.password_time_cost < 3 or self.password_memory_kib < 65536:
            problems.append("password hashing needs at least argon2id t=3, m=65536 KiB")
        if self.report_threshold < 3:
            problems.append("report_threshold must be at least 3 (it withholds small counts)")
        if problems:
            raise ValueError("production mode refuses insecure settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _oidc_needs_a_client(self) -> "Settings":
        if self.oidc_issuer is not None and not self.oidc_client_id:
            raise ValueError("oidc_issuer is set but oidc_client_id is not")
        if self.citizen_oidc_issuer is not None and not self.citizen_oidc_client_id:
            raise ValueError("citizen_oidc_issuer is set but citizen_oidc_client_id is not")
        return self

    @property
    def is_production(self) -> bool:
        return self.mode == "production"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'onceonly.db'}"

    @property
    def resolved_audit_origin(self) -> str:
        """The C2SP checkpoint origin (and key name), a schema-less URL without spaces or
        '+': fixed configuration, never the address the hub happens to listen on.

        ``audit_origin`` if set; production refuses to start without it. In development,
        the origin this data directory's log was first given (``<keys_dir>/audit-origin``,
        written by the checkpoint signer), else the issuer's host, without its port, and
        path + ``/audit``. A set ``audit_origin`` that differs from the kept one is refused
        in both modes (decision 0089): it would rename the log under every auditor's
        pinned verifier key; ``onceonly keys init --change-audit-origin`` renames it.
        """
        kept = self.kept_audit_origin
        if self.audit_origin and kept is not None and self.audit_origin != kept:
            raise RuntimeError(
                f"audit_origin (ONCEONLY_AUDIT_ORIGIN) is {self.audit_origin} but the audit"
                f" log is named {kept} ({self.keys_dir / AUDIT_ORIGIN_FILE}): the name never"
                " changes, every auditor's pinned verifier key carries it; set it back, or"
                " rename the log with `onceonly keys init --change-audit-origin`"
                " (docs/operations.md)"
            )
        if self.audit_origin:
            return self.audit_origin
        if self.is_production:
            raise RuntimeError(
                "production needs audit_origin (ONCEONLY_AUDIT_ORIGIN): the audit log's"
                " fixed name, which auditors pin, such as hub.example.gov/audit"
            )
        if kept is not None:
            return kept
        parts = urlsplit(self.issuer)
        return f"{parts.hostname}{parts.path.rstrip('/')}/audit"

    @property
    def kept_audit_origin(self) -> str | None:
        """The audit log's name as kept in ``<keys_dir>/audit-origin`` since its
        checkpoint key was made, or None before."""
        kept = self.keys_dir / AUDIT_ORIGIN_FILE
        return kept.read_text(encoding="utf-8").strip() if kept.is_file() else None

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def should_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else not self.is_production
