"""Configuration: ``CHURNWATCH_*`` environment variables over an optional TOML file.

Precedence: explicit overrides > environment > TOML file (``CHURNWATCH_CONFIG`` or
``--config``) > defaults. Invalid values fail at startup with a :class:`ConfigError` that
names the key, where it came from and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

EVENTS_TOPIC = "churn.events"
ALERTS_TOPIC = "churn.alerts"
SCORES_TOPIC = "churn.scores"
DLQ_TOPIC = "churn.dlq"


def home_topic(app_id: str) -> str:
    """The internal topic where a worker group forwards events that arrived away from their
    subscriber's home partition (``streams.repartition``); as many partitions as
    ``churn.events``."""
    return f"{app_id}.churn.events.home"

ENV_PREFIX = "CHURNWATCH_"
_OTHER_ENV = {"config", "redis_server_bin", "failpoint", "send_token"}  # read elsewhere: config file path,
# embedded redis, `churnwatch send --token`


class Settings(BaseSettings):
    """Every setting, its default and its meaning."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    broker: str = Field("", description="Kafka bootstrap URL, e.g. kafka://127.0.0.1:9092")
    redis_url: str = Field("", description="Redis URL, e.g. redis://127.0.0.1:6379/0")
    redis_cluster: bool = Field(False, description="redis_url is a seed node of a Redis "
                                "Cluster (database 0 only)")
    redis_timeout_s: float = Field(15, gt=0, le=600, description="Redis socket timeout: a "
                                   "silent (blackholed) connection fails after this and is "
                                   "retried")
    alerts_jsonl: Path | None = Field(None, description="append alerts to this JSONL file")
    scores_jsonl: Path | None = Field(None, description="append score records to this JSONL file")
    app_id: str = Field("churnwatch", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$",
                        description="Kafka consumer group / Faust app id (letters, digits, "
                                    "'.', '_', '-': it also names an internal topic)")
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the churn.* topics")
    topic_prefix: str = Field("", max_length=100, pattern=r"^[A-Za-z0-9._-]*$",
                              description="prepended to every topic name, e.g. 'staging.' "
                                          "for staging.churn.events, so deployments can share "
                                          "a cluster (give each its own app_id too)")
    topic_replication_factor: int = Field(1, ge=1, le=32, description="replication factor of "
                                          "the topics churnwatch creates (3 on a production "
                                          "cluster)")
    create_topics: bool = Field(True, description="create missing topics at startup; false = "
                                "never create any: startup checks they exist with `partitions` "
                                "partitions and names the missing ones")
    batch_max: int = Field(10_000, ge=1, le=100_000, description="max events per micro-batch "
                           "(estimated before decoding: 1 per JSON object, the event ids of "
                           "an array)")
    batch_max_bytes: int = Field(8 << 20, ge=1024, le=1 << 30, description="a micro-batch "
                                 "whose messages hold more bytes runs through the pipeline in "
                                 "parts of at most this size (about 50k events at 8 MiB)")
    batch_within_s: float = Field(0.02, gt=0, le=10, description="max wait to fill a micro-batch")
    lateness_days: float = Field(7, ge=0, le=30, description="allowed event lateness")
    future_tolerance_s: float = Field(86_400, ge=0, le=10 * 365 * 86_400, description="an event "
                                      "whose ts is further ahead of the worker's clock goes to "
                                      "churn.dlq as `future` (a producer's broken clock must "
                                      "not move a subscriber's or a partition's event time)")
    state_ttl_days: int = Field(400, ge=1, description="a subscriber's state is dropped after "
                                "this many days without events (event time, by the silence "
                                "sweep), or after a churn event")
    loop_stall_log_s: float = Field(0.5, ge=0, le=60, description="log a WARNING with the "
                                    "code holding the worker's event loop when it is held "
                                    "this long (0 = off; the lag histogram is always on)")
    gc_interval_s: float = Field(60.0, gt=0, le=3600, description="how often the worker runs a "
                                 "full garbage collection (churnwatch/infra/runtime/gc_tuning.py)")
    malloc_mmap_threshold_kb: int = Field(128, ge=0, le=32 * 1024, description="blocks of at "
                                          "least this size get their own mapping, returned "
                                          "on free (glibc; 0 = glibc's dynamic threshold, "
                                          "churnwatch/infra/runtime/allocator.py)")
    malloc_arena_max: int = Field(0, ge=0, le=1024, description="malloc arenas "
                                  "the worker's threads share (glibc; 0 = glibc's default of "
                                  "8 per core, churnwatch/infra/runtime/allocator.py)")
    memtrace_file: Path | None = Field(None, description="diagnostic: trace the worker's "
                                       "memory and append a sample to this JSONL file every "
                                       "memtrace_interval_s (slow; churnwatch/infra/runtime/memtrace.py)")
    memtrace_interval_s: float = Field(30.0, gt=0, le=3600, description="seconds between "
                                       "memtrace_file samples")
    state_cache_size: int = Field(200_000, ge=0, le=50_000_000, description="subscribers whose "
                                  "stored state a worker keeps in memory (about 1 KB each) so "
                                  "their batches skip the read; 0 = read every batch")
    rules_file: Path | None = Field(None, description="rules TOML (default: shipped rules)")
    playbook_file: Path | None = Field(None, description="playbook TOML (default: shipped)")
    silence_interval_s: float = Field(5.0, gt=0, le=3600, description="how often the silence "
                                      "sweep runs (wall clock)")
    silence_quiet_days: float = Field(1.0, gt=0, le=90, description="event-time days without "
                                      "events before a subscriber is re-scored")
    silence_every_days: float = Field(1.0, gt=0, le=90, description="event-time days between "
                                      "re-scorings of a quiet subscriber")
    silence_page: int = Field(200, ge=1, le=10_000, description="subscribers re-scored per "
                              "sweep step; the worker's batches run between steps")
    silence_per_tick: int = Field(1000, ge=1, le=1_000_000, description="most subscribers "
                                  "re-scored per partition per sweep tick (the rest wait for "
                                  "the next tick)")
    silence_share: float = Field(0.25, gt=0, le=1, description="most share of the worker's "
                                 "time the silence sweep takes while events wait to be "
                                 "processed (a pause after each step); when none wait it runs "
                                 "at full speed. 1: no pause")
    metrics_host: str = Field("127.0.0.1", description="bind address of /metrics")
    metrics_port: int = Field(9464, ge=0, le=65535, description="port of /metrics (0 = any free)")
    webhook_url: str = Field("", description="POST each alert, signed (Standard Webhooks), to "
                             "this http(s) URL; empty = off")
    webhook_secret: SecretStr = Field(SecretStr(""), description="webhook signing secret, "
                                      "whsec_<base64 of 24 to 64 random bytes> (Standard "
                                      "Webhooks)")
    webhook_timeout_s: float = Field(5, gt=0, le=60, description="timeout of one webhook attempt")
    webhook_max_attempts: int = Field(6, ge=1, le=20, description="webhook attempts before an "
                                      "alert goes to churn.dlq")
    work_queues: bool = Field(False, description="queue each alert action on the Redis Stream "
                              "cw:queue:<team>")
    work_queue_maxlen: int = Field(100_000, ge=1000, description="approximate max entries per "
                                   "team stream")
    max_contacts_per_month: int = Field(4, ge=0, le=100, description="contact actions "
                                        "(call, message, visit) per subscriber per month")
    max_offers_per_month: int = Field(2, ge=0, le=100, description="offers per subscriber per "
                                      "month")
    quiet_start_hour: int = Field(21, ge=0, le=23, description="quiet hours start (local hour): "
                                  "contact actions are held until they end")
    quiet_end_hour: int = Field(8, ge=0, le=23, description="quiet hours end (local hour; equal "
                                "to the start = no quiet hours)")
    timezone: str = Field("UTC", description="the operator's time zone for quiet hours")
    storm_max_alerts_per_hour: int = Field(500, ge=0, le=10_000_000, description="alerts of one "
                                           "rule per event-time hour (per worker) before "
                                           "actions are held for review; 0 = off")
    session_timeout_s: float = Field(6.0, ge=1, le=300, description="Kafka consumer session "
                                     "timeout (rebalances wait up to half of it)")
    fetch_max_wait_ms: int = Field(25, ge=1, le=10_000, description="longest wait of one "
                                   "Kafka fetch for new data (Faust's fixed 1500 ms delays "
                                   "quiet-partition events on Tansu)")
    broker_check_interval_s: float = Field(5.0, gt=0, le=3600, description="how often the "
                                           "worker checks that the broker has not lost data "
                                           "it had seen (offsets going backwards)")
    publish_scores: bool = Field(False, description="also publish score records to churn.scores")
    attrs_max_keys: int = Field(64, ge=0, le=1024, description="profile attributes (attrs) "
                                "stored per subscriber: a profile with more keeps the first "
                                "this many in key order, the rest are dropped and counted "
                                "(churnwatch_dropped_attrs_total)")
    attrs_max_key_length: int = Field(64, ge=1, le=64, description="longest attrs key stored; "
                                      "longer keys are dropped and counted (the contract "
                                      "rejects events with keys over 64 characters)")
    model_horizon_days: float = Field(60, gt=0, le=365, description="a churn event labels the "
                                      "subscriber's snapshots of this many days before it "
                                      "positive; snapshots surviving it are negative")
    model_snapshot_every_days: float = Field(14, gt=0, le=365, description="at most one stored "
                                             "snapshot per subscriber per this many days (the "
                                             "latest of the period)")
    model_exclusion_days: float = Field(60, ge=0, le=365, description="after a retention "
                                        "action, a subscriber's snapshots are not learned for "
                                        "this many days (the action confounds the label)")
    model_history_days: float = Field(35, ge=0, le=365, description="a subscriber new to the "
                                      "store whose profile gave no tenure_months gets no model "
                                      "snapshot for this many days; one with a tenure is "
                                      "learned from its first (windows still filling are "
                                      "read as missing)")
    holdout_fraction: float = Field(0.05, ge=0, le=1, description="share of subscribers whose "
                                    "alerts get no retention action (chosen by a hash of the "
                                    "id), to measure the actions' effect")
    holdout_salt: str = Field("churnwatch-holdout-1", min_length=1, description="salt of the "
                              "holdout hash; a new salt starts a new experiment")
    model_max_labels_per_horizon: int = Field(1, ge=1, le=1000, description="churn/active "
                                              "labels of one subscriber learned within "
                                              "model_horizon_days of each other; further ones "
                                              "resolve their snapshots without learning them")
    model_max_attrs: int = Field(64, ge=0, le=1024, description="profile attributes the "
                                 "model learns as inputs: the first this many distinct ones "
                                 "it learns (or of model_attrs); others are ignored, so the "
                                 "model's size is bounded")
    model_attrs: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=1024, description="allow-list of the profile attributes the model "
        "learns (at most model_max_attrs of them); unset: the first model_max_attrs it "
        "learns. Set it when a feed may send attributes of its own choosing")
    model_learner: bool = Field(True, description="this worker may become the fleet's learner "
                                "(one at a time, by a Redis lock)")
    model_publish_interval_s: float = Field(10, gt=0, le=86_400, description="how often the "
                                            "learner publishes a new model version")
    model_publish_growth: float = Field(0.1, ge=0, le=100, description="the learner also "
                                        "publishes at its next step (each second) once the "
                                        "labels learned since the last version reach this "
                                        "share of the labels that version had learned, so a "
                                        "model learning fast (go-live, a backlog) does not "
                                        "score with a version far behind; 0: every "
                                        "model_publish_interval_s only")
    model_auto_promote: bool = Field(True, description="each published version becomes active "
                                     "unless an operator pinned one (`churnwatch model`)")
    model_keep_versions: int = Field(200, ge=2, le=100_000, description="published versions "
                                     "kept (the active one and its history always are)")
    model_dedup_window_s: float = Field(3600, ge=0, le=7 * 86_400, description="the learner "
                                        "drops an example id it learned this long ago or less "
                                        "(of stream time; a replayed append)")
    model_dedup_capacity: int = Field(262_144, ge=1024, le=1 << 26, description="example ids "
                                      "the learner's dedup window holds per generation "
                                      "(it keeps two, each spanning model_dedup_window_s; "
                                      "fixed memory, 32 B per id: 8 MiB by default); a "
                                      "generation filling sooner shortens the window "
                                      "(churnwatch_model_dedup_early_rotations_total)")
    ingest_host: str = Field("127.0.0.1", description="bind address of `churnwatch ingest`")
    ingest_port: int = Field(8080, ge=0, le=65535, description="port of `churnwatch ingest` "
                             "(0 = any free)")
    ingest_tokens_file: Path | None = Field(None, description="TOML/JSON file of ingest bearer "
                                            "tokens: [tokens] \"<token>\" = \"<feed>\"; "
                                            "re-read when it changes")
    ingest_max_body_bytes: int = Field(16 << 20, ge=1024, le=1 << 30, description="largest "
                                       "accepted request body (413 beyond)")
    ingest_max_events: int = Field(10_000, ge=1, le=1_000_000, description="most events per "
                                   "request (413 beyond)")
    ingest_rate_per_feed: float = Field(200_000, ge=0, description="events/s each feed may "
                                        "send (token bucket; 429 beyond; 0 = unlimited)")
    ingest_rate_burst: int = Field(0, ge=0, description="token bucket size in events (0 = the "
                                   "larger of one second of rate and ingest_max_events)")
    ingest_max_in_flight: int = Field(32, ge=1, le=10_000, description="requests admitted at "
                                      "once (read, validated or awaiting broker acks); 503 "
                                      "beyond, so memory stays below this x max body")
    ingest_max_in_flight_per_feed: int = Field(8, ge=1, le=10_000, description="requests of "
                                               "one feed admitted at once (at most "
                                               "ingest_max_in_flight): one feed cannot hold "
                                               "every slot")
    ingest_body_timeout_s: float = Field(60, gt=0, le=3600, description="whole request body "
                                         "within this time (408 beyond)")
    ingest_body_min_bytes_per_s: float = Field(10_240, ge=0, description="after "
                                               "ingest_body_grace_s, the body's average rate "
                                               "must be at least this (408 below; 0 = off)")
    ingest_body_grace_s: float = Field(5, ge=0, le=600, description="seconds before the "
                                       "minimum body rate applies")
    ingest_per_message: int = Field(1000, ge=1, le=100_000, description="events packed per "
                                    "Kafka message by the ingest process")
    ingest_produce_timeout_s: float = Field(30, gt=0, le=600, description="wait for broker "
                                            "acks before answering 503")
    web_enabled: bool = Field(True, description="serve /healthz, /readyz and the retention "
                              "team's page and API from each worker (the page and API need "
                              "web_token)")
    web_host: str = Field("127.0.0.1", description="bind address of the worker's web server")
    web_port: int = Field(8090, ge=0, le=65535, description="port of the worker's web server "
                          "(0 = any free)")
    web_token: SecretStr = Field(SecretStr(""), description="token of the retention team's page "
                                 "and API (at least 16 characters); without it the web "
                                 "server serves /healthz and /readyz only")
    web_session_ttl_s: int = Field(8 * 3600, ge=60, le=30 * 86_400, description="a browser "
                                   "session of the retention page ends this long after its "
                                   "login (logout ends it at once, on every worker)")
    web_logins_per_minute: int = Field(10, ge=1, le=10_000, description="login attempts one "
                                       "client address may make per minute on a worker's page "
                                       "(then 429 with Retry-After)")
    web_feed_maxlen: int = Field(10_000, ge=100, le=10_000_000, description="approximate "
                                 "number of recent alerts kept in the global feed cw:feed")
    risk_history: int = Field(100, ge=0, le=10_000, description="risk-score points kept per "
                              "subscriber, one per event-time day (0 = off)")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how Kafka clients talk to the broker (SASL_SSL for a managed "
        "cluster)")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (SASL_* protocols)")
    kafka_username: str = Field("", description="SASL user name (SASL_* protocols)")
    kafka_password: SecretStr = Field(SecretStr(""), description="SASL password (SASL_* "
                                      "protocols); never logged")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signed the "
                                          "broker's certificate (SSL, SASL_SSL; default: the "
                                          "system's)")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate for mutual "
                                            "TLS (SSL, SASL_SSL)")
    kafka_ssl_keyfile: Path | None = Field(None, description="client certificate's private key")
    log_level: str = Field("info", description="debug, info, warning or error")

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("kafka", "aiokafka"):
            raise ValueError("must look like kafka://HOST:PORT")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must look like https://HOST/PATH")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr) -> SecretStr:
        from churnwatch.infra.webhook_keys import secret_key

        if value.get_secret_value():
            secret_key(value.get_secret_value())  # ValueError: the form and how to make one
        return value

    @field_validator("web_token")
    @classmethod
    def _web_token(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 16:
            raise ValueError("too short: use at least 16 random characters")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must look like redis://HOST:PORT/DB (or rediss:// for TLS)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (use an IANA name such as Europe/Paris)") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("must be debug, info, warning or error")
        return value.lower()

    @field_validator("redis_cluster")
    @classmethod
    def _cluster_url(cls, value: bool, info: ValidationInfo) -> bool:
        url = urlparse(info.data.get("redis_url") or "")
        if value and url.scheme == "unix":
            raise ValueError("a Redis Cluster is reached over TCP: set redis_url to "
                             "redis://HOST:PORT (or rediss://) of any cluster node")
        if value and url.path.strip("/") not in ("", "0"):
            raise ValueError(f"a Redis Cluster has only database 0, but redis_url names "
                             f"database {url.path.strip('/')!r}: end it with /0")
        return value
    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_username and self.kafka_password.get_secret_value()):
            raise ValueError("kafka_security_protocol SASL_* needs kafka_username and "
                             "kafka_password (CHURNWATCH_KAFKA_USERNAME, "
                             "CHURNWATCH_KAFKA_PASSWORD)")
        if not sasl and (self.kafka_username or self.kafka_password.get_secret_value()):
            raise ValueError("kafka_username/kafka_password are only used with "
                             "kafka_security_protocol SASL_PLAINTEXT or SASL_SSL")
        tls = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        if not tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile):
            raise ValueError("kafka_ssl_* files are only used with kafka_security_protocol SSL "
                             "or SASL_SSL")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together")
        return self

    @property
    def bootstrap(self) -> str:
        """host:port list for Kafka clients."""
        return self.broker.split("://", 1)[-1]
