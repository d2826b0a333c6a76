"""The settings' sections (churnwatch/infra/sections.py): durations in milliseconds of event
time derived from the flat settings, exactly."""

from __future__ import annotations

from churnwatch.core.units import DAY_MS
from churnwatch.infra.config import Settings
from churnwatch.infra.sections import Sections


def test_sections_derive_milliseconds_from_the_flat_settings() -> None:
    s = Settings(lateness_days=1.5, future_tolerance_s=90, state_ttl_days=3,
                 silence_quiet_days=0.5, model_horizon_days=60, model_history_days=0,
                 model_dedup_window_s=2.5, model_attrs=["arpu"], holdout_fraction=0.1)
    got = Sections.of(s)
    assert got.store.lateness_ms == 1.5 * DAY_MS and got.store.future_ms == 90_000
    assert got.store.ttl_s == 3 * 86_400 and got.labels.lateness_ms == got.store.lateness_ms
    assert got.silence.quiet_ms == DAY_MS // 2 and got.silence.every_ms == DAY_MS
    assert got.labels.horizon_ms == 60 * DAY_MS and got.labels.history_ms == 0
    assert got.learner.dedup_window_ms == 2_500 and got.learner.allowed_attrs == ("arpu",)
    assert got.policy.holdout_fraction == 0.1


def test_defaults_give_the_documented_values() -> None:
    got = Sections.of(Settings())
    assert got.store.lateness_ms == 7 * DAY_MS and got.store.ttl_s == 400 * 86_400
    assert got.learner.allowed_attrs is None and got.learner.enabled
