"""The settings in sections, with their derived values.

:class:`~churnwatch.infra.config.Settings` stays flat, as the contract's environment
variables are (``CHURNWATCH_LATENESS_DAYS``, …); the code that assembles a worker reads it
through these frozen sections, where durations are already integer milliseconds (or
seconds) of event time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from churnwatch.core.units import DAY_MS, SECOND_MS

__all__ = ["LearnerSection", "LabelSection", "PolicySection", "Sections", "SilenceSection",
           "StoreSection"]


def _ms_of_days(days: float) -> int:
    return int(days * DAY_MS)


@dataclass(frozen=True)
class StoreSection:
    """The feature store: lateness, clock skew, state lifetime, attributes, cache."""

    lateness_ms: int
    future_ms: int
    ttl_s: int
    attrs_max_keys: int
    attrs_max_key_length: int
    cache_size: int


@dataclass(frozen=True)
class SilenceSection:
    """The silence sweep: when a quiet subscriber is re-scored (event time), how often and
    how many at a time (wall clock)."""

    quiet_ms: int
    every_ms: int
    interval_s: float
    page: int
    per_tick: int


@dataclass(frozen=True)
class LabelSection:
    """Delayed labels: snapshots, horizon and what is learnable."""

    horizon_ms: int
    every_ms: int
    lateness_ms: int
    exclusion_ms: int
    history_ms: int
    max_labels: int


@dataclass(frozen=True)
class LearnerSection:
    """The fleet's learner and its published versions."""

    enabled: bool
    publish_every_s: float
    auto_promote: bool
    keep_versions: int
    dedup_window_ms: int
    dedup_capacity: int
    max_attrs: int
    allowed_attrs: tuple[str, ...] | None
    publish_growth: float


@dataclass(frozen=True)
class PolicySection:
    """Contact policy, holdout and storm protection."""

    max_contacts_per_month: int
    max_offers_per_month: int
    quiet_start_hour: int
    quiet_end_hour: int
    timezone: str
    holdout_fraction: float
    holdout_salt: str
    storm_max_alerts_per_hour: int


@dataclass(frozen=True)
class Sections:
    store: StoreSection
    silence: SilenceSection
    labels: LabelSection
    learner: LearnerSection
    policy: PolicySection

    @classmethod
    def of(cls, s: Any) -> Sections:
        """The sections of the settings ``s`` (a ``Settings``)."""
        return cls(
            store=StoreSection(_ms_of_days(s.lateness_days),
                               int(s.future_tolerance_s * SECOND_MS),
                               int(s.state_ttl_days * DAY_MS // SECOND_MS),
                               s.attrs_max_keys, s.attrs_max_key_length, s.state_cache_size),
            silence=SilenceSection(_ms_of_days(s.silence_quiet_days),
                                   _ms_of_days(s.silence_every_days), s.silence_interval_s,
                                   s.silence_page, s.silence_per_tick),
            labels=LabelSection(_ms_of_days(s.model_horizon_days),
                                _ms_of_days(s.model_snapshot_every_days),
                                _ms_of_days(s.lateness_days), _ms_of_days(s.model_exclusion_days),
                                _ms_of_days(s.model_history_days),
                                s.model_max_labels_per_horizon),
            learner=LearnerSection(s.model_learner, s.model_publish_interval_s,
                                   s.model_auto_promote, s.model_keep_versions,
                                   int(s.model_dedup_window_s * SECOND_MS),
                                   s.model_dedup_capacity, s.model_max_attrs,
                                   tuple(s.model_attrs) if s.model_attrs is not None else None,
                                   s.model_publish_growth),
            policy=PolicySection(s.max_contacts_per_month, s.max_offers_per_month,
                                 s.quiet_start_hour, s.quiet_end_hour, s.timezone,
                                 s.holdout_fraction, s.holdout_salt,
                                 s.storm_max_alerts_per_hour))
