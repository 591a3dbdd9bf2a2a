"""One settings model for every Stimmung component.

Sources, highest priority first: explicit overrides (CLI flags), environment variables
(``STIMMUNG_`` prefix, ``__`` between nested names, e.g. ``STIMMUNG_KAFKA__BOOTSTRAP_SERVERS``),
one YAML file, then the defaults below. The YAML file is the one named by ``--config``, else by
``STIMMUNG_CONFIG``, else the default settings file ``$XDG_CONFIG_HOME/stimmung/config.yaml``
(``~/.config/stimmung/config.yaml``) when it exists — where ``stimmung demo`` writes what it
established (pseudonymisation key file, brands, case routes, inbox account), so later commands
find them without flags. ``Settings.source_file`` tells which file was read.

Secrets (pseudonymisation key, Elasticsearch credentials) come only from the environment or
from mounted files (``*_file`` fields); they are ``SecretStr`` so they never show up in logs
or reprs.

One module on purpose (about 640 lines): every section's fields, defaults and descriptions are
the settings reference operators read, and pydantic needs them in one model tree; the connector
sections live beside their connectors (connectors/*/settings.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from stimmung.connectors.registry import CONNECTORS
from stimmung.sections import ConfigError, read_secret
from stimmung.sections import Section as _Section

__all__ = ["ConfigError", "ConnectorSettings", "Settings", "load_settings", "merge_overrides", "read_secret"]


def _default_cache_dir() -> Path:
    # Elasticsearch refuses to run as root, so as root we run it as a dedicated user; that user
    # must be able to read the unpacked distribution, which /root/.cache does not allow.
    if os.geteuid() == 0:
        return Path("/var/cache/stimmung")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stimmung"


def default_config_path() -> Path:
    """The settings file read when neither ``--config`` nor ``STIMMUNG_CONFIG`` names one."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "stimmung" / "config.yaml"


def _default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/stimmung/stack")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "stimmung" / "stack"


class TopicSettings(_Section):
    raw: str = "stimmung.mentions.raw"
    enriched: str = "stimmung.mentions.enriched"
    deadletter: str = "stimmung.deadletter"
    alerts: str = "stimmung.alerts"
    privacy: str = Field("stimmung.privacy", description="Privacy signals from sources (e.g. deleted accounts) for erasure")
    consent: str = Field("stimmung.consent", description="Consent records (compacted, keyed by author pseudonym)")
    influence: str = Field("stimmung.author-influence", description="Per-author influence state (compacted, keyed by pseudonym)")
    partitions: int = Field(3, ge=1, description="Partitions per topic: the unit of parallelism for workers")
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=60_000)
    deadletter_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=60_000)


class KafkaSecurity(_Section):
    """How clients authenticate to Kafka: TLS (server CA, optional client certificate for mTLS,
    e.g. a Strimzi TLS user) and/or SASL (SCRAM-SHA-512 is Strimzi's default, PLAIN for others)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certificates")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mTLS)")
    ssl_keyfile: Path | None = Field(None, description="Client private key (mTLS)")
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _complete(self) -> "KafkaSecurity":
        if self.protocol.startswith("SASL") and not self.sasl_username:
            raise ValueError(f"{self.protocol} needs sasl_username (and sasl_password or sasl_password_file)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "stimmung"
    topics: TopicSettings = TopicSettings()
    security: KafkaSecurity = KafkaSecurity()

    @field_validator("bootstrap_servers")
    @classmethod
    def _hosts(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        if not hosts or any(":" not in h for h in hosts):
            raise ValueError("expected host:port[,host:port...]")
        return ",".join(hosts)

    @property
    def bootstrap_list(self) -> list[str]:
        return self.bootstrap_servers.split(",")


class HTTPServiceAuth(_Section):
    """Credentials for an HTTP service of the Elastic stack: an API key, or user + password; a CA."""

    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_certs: Path | None = None


class ElasticsearchSettings(HTTPServiceAuth):
    url: str = "http://127.0.0.1:9200"
    mentions_index: str = Field("stimmung-mentions", description="Read alias over the time-based mention indices (also their name prefix)")
    alerts_index: str = "stimmung-alerts"
    erasures_index: str = Field("stimmung-erasures", description="Erasure records: authors whose mentions must never be indexed again")
    consents_index: str = Field("stimmung-consents", description="Current consent per author pseudonym (the sink's view)")
    consent_audit_index: str = Field("stimmung-consent-audit", description="Every grant, withdrawal and erasure of a consent")
    cases_index: str = Field("stimmung-cases", description="Social CRM cases")
    corrections_index: str = Field("stimmung-corrections", description="Analysts' corrections of mentions (stimmung correct), by mention id")
    index_period: Literal["day", "week", "month"] = Field("month", description="One mentions index per period of the mention's creation time")
    retention_days: int = Field(365, ge=0, description="Delete mentions older than this (0 = keep forever); ILM where the cluster has it, else the sink")
    replicas: str = Field("0-1", description="index.auto_expand_replicas: 0-1 runs green on one node and keeps a replica on more")
    circuit_fail_max: int = Field(5, ge=1, description="Consecutive failed bulk requests that open the circuit")
    circuit_reset_s: float = Field(30.0, gt=0, description="How long the circuit stays open before one trial request")
    erasure_refresh_s: float = Field(5.0, gt=0, description="How often the sink re-reads the erasure records")
    request_timeout_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class KibanaSettings(HTTPServiceAuth):
    url: str | None = Field(None, description="Kibana base URL: saved-object import, Discover links in search output and alerts")
    space: str | None = Field(None, description="Kibana space for imported objects (default space if unset)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class PipelineSettings(_Section):
    app_id: str = "stimmung"
    enrich_batch_size: int = Field(64, ge=1, le=4096)
    enrich_batch_wait_s: float = Field(0.5, gt=0)
    sink_batch_size: int = Field(1000, ge=1)
    sink_batch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    sink_batch_wait_s: float = Field(0.3, gt=0)  # with the 1 s refresh: p99 produce->searchable < 2 s at 200/s (benchmarks/sink.py)
    sink_max_retries: int = Field(8, ge=0)
    # Faust keeps its own local state here (table stores, offsets of standby replicas).
    data_dir: Path = Path("/tmp/stimmung-faust")
    # Faust's defaults (60 s each) made every killed worker stop its partitions for a minute
    # before the group moved them (issue #20). Heartbeats come from aiokafka's own task while the
    # models run in a thread, so a short session does not throw out a busy worker.
    session_timeout_s: float = Field(20.0, ge=6, le=300, description="Faust group session timeout (worker, alerting)")
    rebalance_timeout_s: float = Field(30.0, ge=6, le=600, description="How long a rebalance waits for members to rejoin")


class SeriesSettings(_Section):
    """One family of count series the spike detector watches: per brand, optionally split by
    topic or platform; by default only complaints (a breach of expectations, the trained complaint
    head: issue #18), optionally only one sentiment or one topic."""

    split_by: list[Literal["topic", "platform"]] = Field(default_factory=list, description="Besides the brand")
    complaint: bool = Field(True, description=(
        "Count only complaints (the mention's complaint label; without the trained heads, the prototype "
        "'complaint' topic). false: every mention that passes the other filters"))
    sentiment: Literal["negative", "neutral", "positive"] | None = Field(None, description=(
        "Only mentions of this sentiment, e.g. negative (with complaint: false, the series before issue #18)"))
    topic: str | None = Field(None, description="Only mentions with this topic label (e.g. delivery)")
    min_relevance: float | None = Field(None, ge=0, le=1, description=(
        "Only mentions the relevance head judges to be about a brand at all with at least this probability "
        "(e.g. 0.5: a news story that names the brand in passing is not counted; one figure per post, not per "
        "brand). Mentions without a relevance (models.heads off, or a Hugging Face sentiment model) are "
        "counted: nothing judged them"))


class DetectorSettings(_Section):
    """Explicit detector parameters (pipeline/alerts/spikes.py); unset ones come from the
    sensitivity preset (low/medium/high: an alert budget of 0.25/0.5/1 pages per series-week)."""

    budget_per_week: float | None = Field(None, gt=0, le=50, description=(
        "Pages per series and week the on-call can afford on ordinary days; the threshold follows from "
        "the series' own daily peaks"))
    min_page_interval_s: float | None = Field(None, ge=0, description=(
        "Maximum notification frequency: a series that paged pages again no sooner than this"))
    level_shift_s: float | None = Field(None, gt=0, description="A level held this long becomes the new normal")
    history_days: int | None = Field(None, ge=7, le=365, description="Daily peaks the threshold is learned from")
    min_history_days: int | None = Field(None, ge=1, description="Before this, a conservative count test (alpha)")
    resolve_fraction: float | None = Field(None, gt=0, le=1, description="Hysteresis: quiet below this share of the threshold")
    min_distinct: int | None = Field(None, ge=1, description="Distinct authors and texts a window needs to count at all")
    alpha: float | None = Field(None, gt=0, lt=1)
    min_count: int | None = Field(None, ge=1)
    min_ratio: float | None = Field(None, ge=1)
    critical_ratio: float | None = Field(None, ge=1)
    warmup_windows: int | None = Field(None, ge=1)
    resolve_windows: int | None = Field(None, ge=1)
    cooldown_s: float | None = Field(None, ge=0)
    escalate_factor: float | None = Field(None, gt=1, description="Critical: a peak this many times rarer than the threshold's")
    max_incident_s: float | None = Field(None, gt=0, description="Ignored (kept so old configs load): level_shift_s bounds incidents")


class ChannelSettings(_Section):
    """Where alerts can go. Secrets (URLs with tokens, routing keys, HMAC secrets) from files or env."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["alertmanager", "slack", "teams", "pagerduty", "webhook"]
    url: str | None = Field(None, description="Alertmanager base URL, or a webhook URL without secrets in it")
    url_file: Path | None = Field(None, description="Slack/Teams incoming-webhook URLs carry their token: keep them in a file")
    routing_key: SecretStr | None = None
    routing_key_file: Path | None = Field(None, description="PagerDuty Events API v2 integration key")
    secret: SecretStr | None = None
    secret_file: Path | None = Field(None, description="HMAC-SHA256 key for the generic webhook's signature header")
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    notify_updates: bool = Field(False, description="Also send 'updated' events (Alertmanager always gets them)")


class RouteSettings(_Section):
    """Alerts matching every given condition go to ``channels``; the first matching route wins
    unless ``continue_matching`` is set."""

    brands: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    severities: list[Literal["warning", "critical"]] = Field(default_factory=list)
    channels: list[str] = Field(min_length=1)
    continue_matching: bool = False


class AlertingSettings(_Section):
    window_s: int = Field(300, ge=1, description="Tumbling window of the counts (event time: the mention's creation)")
    lateness_s: float = Field(120.0, ge=0, description="Allowed lateness: a window closes this long after its end")
    tick_s: float = Field(10.0, gt=0, description="How often windows are checked for closing")
    sensitivity: Literal["low", "medium", "high"] = "medium"
    detector: DetectorSettings = DetectorSettings()
    series: list[SeriesSettings] = Field(default_factory=lambda: [SeriesSettings(), SeriesSettings(split_by=["topic"])])
    samples: int = Field(3, ge=0, le=20, description="Sample mentions per alert")
    sentiment_shift: bool = Field(True, description="Also watch each brand's negative share at flat volume (own alert kind)")
    sentiment_shift_threshold: float = Field(8.0, gt=0, description="CUSUM decision level; higher: fewer, later alerts")
    channels: list[ChannelSettings] = Field(default_factory=list)
    routes: list[RouteSettings] = Field(default_factory=list, description="Empty: every alert to every channel")

    @model_validator(mode="after")
    def _routes_name_channels(self) -> "AlertingSettings":
        names = {c.name for c in self.channels}
        for n, route in enumerate(self.routes):
            unknown = set(route.channels) - names
            if unknown:
                raise ValueError(f"routes[{n}]: unknown channels {sorted(unknown)}")
        return self


class CRMApiSettings(_Section):
    """The consent endpoint for CRM systems (``stimmung consent serve``): bearer-token authenticated."""

    host: str = "0.0.0.0"
    port: int = Field(8081, ge=1, le=65535)
    token: SecretStr | None = None
    token_file: Path | None = None


class CaseRouteSettings(_Section):
    """Mentions matching every given condition open (or join) a case in ``queue``. First match wins."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    queue: str = Field(min_length=1, description="Team queue: support, legal, marketing, pr, ...")
    priority: Literal["P1", "P2", "P3", "P4"] = "P3"
    brands: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    sentiments: list[Literal["negative", "neutral", "positive"]] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    min_influence: float | None = Field(None, ge=0, le=100)
    min_relevance: float | None = Field(None, ge=0, le=1, description=(
        "Only mentions whose relevance (probability the post is about a brand at all, one figure per post) "
        "is at least this; "
        "mentions without a relevance (heads off) still match"))
    query: str | None = Field(None, description="A brand query (keywords, phrases, NEAR, ...) the text must match")
    first_response_sla_s: float = Field(4 * 3600, gt=0)
    resolution_sla_s: float = Field(3 * 86400, gt=0)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is not None:
            from stimmung.brandquery import parse

            parse(value)  # a syntax error names its position
        return value


class TicketWebhookSettings(_Section):
    url: str | None = Field(None, description="Mirror cases to a ticketing system (signed JSON on open/update/close)")
    secret: SecretStr | None = None
    secret_file: Path | None = None


class InfluenceSettings(_Section):
    """Platform normalisation of the influence score (docs/influence.md)."""

    # "A clearly influential account": the lower end of what marketers call macro influencers on
    # each platform (earlier, lower references scored half of all ordinary authors 80+).
    reference_followers: dict[str, int] = Field(default_factory=lambda: {
        "x": 100_000, "bluesky": 20_000, "mastodon": 10_000, "reddit": 20_000, "hackernews": 5_000, "default": 20_000})
    reference_engagement: dict[str, float] = Field(default_factory=lambda: {
        "x": 500.0, "bluesky": 200.0, "mastodon": 100.0, "reddit": 500.0, "hackernews": 200.0, "default": 200.0})
    half_life_mentions: float = Field(20.0, gt=0, description="How fast an author's engagement average forgets")


class CRMSettings(_Section):
    linking_purpose: Literal["service", "profiling", "marketing"] = Field(
        "service", description="The consent purpose that allows linking an author's mentions to a CRM contact")
    api: CRMApiSettings = CRMApiSettings()
    routes: list[CaseRouteSettings] = Field(default_factory=list, description="Empty: no cases are opened")
    ticket_webhook: TicketWebhookSettings = TicketWebhookSettings()
    sla_check_s: float = Field(60.0, gt=0)
    influence: InfluenceSettings = InfluenceSettings()


class InboxAccount(_Section):
    """A person who works cases. Without ``password_hash`` the account signs in only through OIDC
    (its rights still come from here when the identity provider sends no roles)."""

    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,128}$")
    display_name: str | None = None
    password_hash: SecretStr | None = Field(None, description="Argon2id hash (`stimmung inbox hash-password`)")
    teams: dict[str, Literal["agent", "lead"]] = Field(default_factory=dict, description="team (= queue) -> role")
    admin: bool = Field(False, description="Sees and changes every queue, and the lead view of every team")


class InboxOIDCSettings(_Section):
    """OpenID Connect sign-in (authorization code + PKCE) for companies with an identity provider."""

    issuer: str | None = Field(None, description="Issuer URL; its /.well-known/openid-configuration is read")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    scopes: str = "openid profile email"
    username_claim: str = "preferred_username"
    roles_claim: str = Field("groups", description="Claim with 'team:agent', 'team:lead' or 'admin' entries")
    label: str = Field("Single sign-on", description="Text of the sign-in button")


class InboxSettings(_Section):
    """The case inbox (`stimmung inbox`): a web app on the cases in Elasticsearch."""

    host: str = "0.0.0.0"
    port: int = Field(8090, ge=1, le=65535)
    public_url: str | None = Field(None, description="Base URL users reach it at (OIDC redirect address)")
    session_secret: SecretStr | None = None
    session_secret_file: Path | None = Field(None, description="Key that signs session cookies (32+ characters)")
    session_max_age_s: int = Field(8 * 3600, ge=60)
    cookie_secure: bool = Field(True, description="Send the session cookie over HTTPS only (localhost is exempt in browsers)")
    teams: list[str] = Field(default_factory=list, description="Teams besides the queues named by crm.routes")
    accounts: list[InboxAccount] = Field(default_factory=list)
    accounts_file: Path | None = Field(None, description="YAML list of accounts (mounted secret), added to `accounts`")
    oidc: InboxOIDCSettings = InboxOIDCSettings()
    audit_index: str = Field("stimmung-inbox-audit", description="Every sign-in, action and export")
    page_size: int = Field(50, ge=1, le=500)
    export_max_rows: int = Field(10_000, ge=1, le=100_000)
    sla_warn_fraction: float = Field(0.75, gt=0, lt=1, description="SLA clock turns amber when this share is used")
    live_poll_s: float = Field(1.0, gt=0, description="How often the live stream looks for changed cases")


class ModelSettings(_Section):
    """Which models enrich mentions. The offline default needs no network."""

    sentiment: str = Field("builtin", description="'builtin' (offline e5 model), 'off', or a Hugging Face model id/path")
    sentiment_file: Path | None = Field(None, description="Override the builtin sentiment weights file")
    topics: bool = True
    taxonomy_file: Path | None = Field(None, description="Topic taxonomy YAML (default: the shipped social-CRM taxonomy)")
    heads: bool = Field(True, description=(
        "Trained heads on the builtin encoder pass: complaint, relevance, aspects, intents, custom labels"))
    custom_heads_dir: Path | None = Field(None, description=(
        "Heads trained by `stimmung models train-labels` (default: ~/.local/share/stimmung/heads)"))
    long_tokens: int = Field(512, ge=64, le=2048, description=(
        "Posts longer than 64 tokens are encoded in 64-token windows up to this many tokens (head+tail beyond); "
        "64 keeps every post at one window"))
    quantization: Literal["none", "ffn", "all"] = Field("none", description=(
        "int8 dynamic quantisation of the builtin encoder: 'ffn' (feed-forward blocks; ~2x fp32 speed, "
        "sentiment within ~2.5 points), 'all' (every linear layer; ~3.5x, German -6 points), 'none' (fp32: "
        "results independent of batching)"))
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = torch's default")
    batch_size: int = Field(16, ge=1, le=1024, description=(
        "Encoder batch: each micro-batch is sorted by token count and encoded in buckets of this size "
        "(small buckets waste little on padding)"))


class PrivacySettings(_Section):
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None


class MetricsSettings(_Section):
    port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 disables the endpoint")
    host: str = "0.0.0.0"


class StackSettings(_Section):
    """The local development/test stack (real Kafka + Elasticsearch on loopback)."""

    cache_dir: Path = Field(default_factory=_default_cache_dir)
    state_dir: Path = Field(default_factory=_default_state_dir)
    kafka_version: str = "4.1.1"
    elasticsearch_version: str = "8.19.21"
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    es_http_port: int = Field(9200, ge=1, le=65535)
    es_transport_port: int = Field(9300, ge=1, le=65535)
    kafka_sasl_port: int = Field(0, ge=0, le=65535, description="Optional SASL/SCRAM-SHA-512 listener (0 = none)")
    kafka_sasl_user: str = "stimmung"
    kafka_sasl_password: SecretStr = Field(SecretStr("stimmung-local"), description="Local stack only")
    kafka_heap: str = "512m"
    es_heap: str = "1g"
    es_user: str = "stimmung-es"
    java_home: Path | None = None
    start_timeout_s: float = Field(180.0, gt=0)

    @model_validator(mode="after")
    def _distinct_ports(self) -> "StackSettings":
        ports = [self.kafka_port, self.kafka_controller_port, self.es_http_port, self.es_transport_port]
        ports += [self.kafka_sasl_port] if self.kafka_sasl_port else []
        if len(set(ports)) != len(ports):
            raise ValueError(f"stack ports must be distinct, got {ports}")
        return self


class BrandSettings(_Section):
    """A brand and the brand queries that say a mention is about it (docs/brand-queries.md)."""

    name: str = Field(min_length=1, max_length=200)
    queries: list[str] = Field(min_length=1)

    @field_validator("queries")
    @classmethod
    def _parse(cls, queries: list[str]) -> list[str]:
        from stimmung.brandquery import BrandQueryError, parse

        for n, query in enumerate(queries):
            try:
                parse(query)
            except BrandQueryError as err:
                raise ValueError(f"query {n + 1}: {err.message} at character {err.position + 1}: {query!r}") from None
        return queries


class _ConnectorCommon(_Section):
    """What every connector shares; each connector's own section is added from the registry."""

    checkpoint_dir: Path | None = Field(None, description="Connector cursors (default: <stack state>/../checkpoints)")
    filter_by_brands: bool = Field(True, description="Publish only mentions matching a brand query (when brands are configured)")
    timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of the connectors' requests")

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...  # the connector sections: `connectors.rss`, ...


if TYPE_CHECKING:
    ConnectorSettings = _ConnectorCommon
else:
    # `connectors.<name>` for every registered connector, in the registry's order; each section
    # is declared beside its connector (connectors/<name>/settings.py).
    ConnectorSettings = create_model(
        "ConnectorSettings", __base__=_ConnectorCommon, __module__=__name__,
        **{name: (c.settings, Field(default_factory=c.settings, description=(c.settings.__doc__ or "").strip() or None))
           for name, c in CONNECTORS.items()})


class ImportSettings(_Section):
    """Column mapping for CSV/JSONL imports: RawMention field -> column (dots reach into JSON)."""

    platform: str = "import"
    columns: dict[str, str] = Field(
        default_factory=lambda: {
            "native_id": "id",
            "text": "text",
            "created_at": "created_at",
            "url": "url",
            "author_id": "author_id",
            "author_handle": "author",
            "author_display_name": "author_name",
            "author_follower_count": "followers",
            "language_hint": "lang",
            "platform": "platform",
            "reply_to_id": "reply_to",
            "thread_id": "thread_id",
            "likes": "likes",
            "shares": "shares",
            "replies": "replies",
        }
    )
    csv_delimiter: str = ","

    @field_validator("columns")
    @classmethod
    def _required_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from stimmung.connectors.fileimport.source import MAPPABLE_FIELDS

        unknown = sorted(set(value) - MAPPABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown target field(s) {unknown}; known: {sorted(MAPPABLE_FIELDS)}")
        missing = sorted({"native_id", "text", "created_at"} - set(value))
        if missing:
            raise ValueError(f"mapping must name a column for {missing}")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STIMMUNG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    kafka: KafkaSettings = KafkaSettings()
    elasticsearch: ElasticsearchSettings = ElasticsearchSettings()
    kibana: KibanaSettings = KibanaSettings()
    pipeline: PipelineSettings = PipelineSettings()
    models: ModelSettings = ModelSettings()
    privacy: PrivacySettings = PrivacySettings()
    metrics: MetricsSettings = MetricsSettings()
    stack: StackSettings = StackSettings()
    importer: ImportSettings = ImportSettings()
    connectors: ConnectorSettings = ConnectorSettings()
    alerting: AlertingSettings = AlertingSettings()
    crm: CRMSettings = CRMSettings()
    inbox: InboxSettings = InboxSettings()
    brands: list[BrandSettings] = Field(default_factory=list, description="Brands to tag mentions with (and to filter sources by)")
    _source_file: Path | None = PrivateAttr(None)

    @property
    def source_file(self) -> Path | None:
        """The YAML file these settings were read from (None: environment and defaults only)."""
        return self._source_file

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
        yaml_file = os.environ.get("STIMMUNG_CONFIG")
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def _known_names() -> set[str]:
    names: set[str] = set()
    for cls in [Settings, *_Section.__subclasses__()]:
        names.update(getattr(cls, "model_fields", {}))
    return names


def _format_errors(err: ValidationError) -> str:
    import difflib

    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden" and e["loc"]:
            msg = "unknown setting"
            close = difflib.get_close_matches(str(e["loc"][-1]), sorted(_known_names()), n=1, cutoff=0.6)
            if close:
                msg += f" (did you mean '{close[0]}'?)"
        lines.append(f"  {loc}: {msg}")
    return "invalid settings:\n" + "\n".join(lines)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def settings_file(config_file: str | Path | None = None) -> Path | None:
    """Which YAML file ``load_settings`` reads: ``config_file`` (``--config``), else
    ``STIMMUNG_CONFIG``, else the default settings file if it exists, else none. A file named
    explicitly must exist; an empty ``STIMMUNG_CONFIG`` means "no file, not even the default"."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    named = os.environ.get("STIMMUNG_CONFIG")
    if named is not None:
        if not named:
            return None
        if not Path(named).is_file():
            raise ConfigError(f"STIMMUNG_CONFIG names a missing file: {named}")
        return Path(named)
    default = default_config_path()
    return default if default.is_file() else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings; raise ConfigError naming each bad field (never a traceback for users)."""
    path = settings_file(config_file)
    previous = os.environ.get("STIMMUNG_CONFIG")
    try:
        if path is not None:
            os.environ["STIMMUNG_CONFIG"] = str(path)
        else:
            os.environ.pop("STIMMUNG_CONFIG", None)
        try:
            settings = Settings(**overrides)
        except ValidationError as err:
            where = f" (in {path} or the environment)" if path else ""
            raise ConfigError(_format_errors(err) + where) from None
        except Exception as err:  # YAML syntax errors and the like
            raise ConfigError(f"could not read settings{f' from {path}' if path else ''}: {err}") from None
        settings._source_file = path
        return settings
    finally:
        if previous is None:
            os.environ.pop("STIMMUNG_CONFIG", None)
        else:
            os.environ["STIMMUNG_CONFIG"] = previous


def merge_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Return a copy of settings with nested overrides applied and validated."""
    data = _deep_merge(settings.model_dump(), overrides)
    try:
        merged = Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None
    merged._source_file = settings.source_file
    return merged
