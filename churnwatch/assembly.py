"""The pipeline assembled from Settings: the feature store, the published (or configured)
ruleset compiled, the active model version, the playbook, the contact and label policies.

Loading validates everything a worker needs before it consumes: an invalid ruleset or
playbook fails here, at startup, with the file and the fix.
"""

from __future__ import annotations

from typing import Any

from alerting.holdout import Holdout
from alerting.ledger import AlertLedger
from alerting.playbook import load_playbook
from alerting.policy import ContactPolicy
from alerting.risk import RiskHistory
from alerting.storm import StormGuard
from churnwatch.core.keys import Keys
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.connect import connect_sync
from churnwatch.infra.runtime.metrics import Metrics
from churnwatch.infra.sections import Sections
from features.attrs import AttrBounds
from features.cache import StateCache
from features.silence import SilenceIndex
from features.store import FeatureStore, StoreConfig
from features.store import warm_up as warm_up_features
from online_models.dedup import warm_up as warm_up_learning
from online_models.model import ChurnModel
from online_models.model import warm_up as warm_up_scoring
from online_models.snapshots import LabelPolicy
from online_models.versions import active_model_sync
from rules import registry
from rules.engine import compile_ruleset
from rules.ruleset import load_ruleset, parse_ruleset
from streams.assignment import Assignment
from streams.pipeline import Pipeline

__all__ = ["build_pipeline", "warm_up_kernels"]


def warm_up_kernels() -> None:
    """Compile every numba kernel a worker runs (or load it from numba's cache) before it
    takes partitions, so none is compiled while it processes (a compile holds the
    interpreter: hundreds of ms per kernel on a cold cache)."""
    warm_up_features()
    warm_up_scoring()
    warm_up_learning()


def build_pipeline(settings: Settings, redis: Any, metrics: Metrics,
                   partitions: Assignment | None = None) -> Pipeline:
    """Load and validate rules and playbook, compile the kernels, and assemble the pipeline
    (``partitions``: the worker's partitions, when it consumes as a member of a group)."""
    sections = Sections.of(settings)
    st, pol, lab = sections.store, sections.policy, sections.labels
    store = FeatureStore(redis, StoreConfig(lateness_ms=st.lateness_ms, future_ms=st.future_ms,
                                            ttl_s=st.ttl_s,
                                            attrs=AttrBounds(st.attrs_max_keys,
                                                             st.attrs_max_key_length)),
                         StateCache(st.cache_size))
    ledger = AlertLedger(redis, ttl_s=st.ttl_s)
    sync = connect_sync(settings)
    published = registry.decode(sync.get(registry.ACTIVE_KEY))
    ruleset = (parse_ruleset(published.text, published.source) if published
               else load_ruleset(settings.rules_file))
    rules = compile_ruleset(ruleset)
    warm_up_kernels()
    model = active_model_sync(sync)
    do_not_contact = frozenset(m.decode() for m in sync.smembers(Keys().do_not_contact()))
    sync.close()
    silence = SilenceIndex(quiet_ms=sections.silence.quiet_ms,
                           every_ms=sections.silence.every_ms)
    playbook = load_playbook(settings.playbook_file)
    playbook.check_segments(rules.ruleset.segment_names)
    policy = ContactPolicy(pol.max_contacts_per_month, pol.max_offers_per_month,
                           pol.quiet_start_hour, pol.quiet_end_hour, pol.timezone)
    labels = LabelPolicy(horizon_ms=lab.horizon_ms, every_ms=lab.every_ms,
                         lateness_ms=lab.lateness_ms, exclusion_ms=lab.exclusion_ms,
                         history_ms=lab.history_ms, max_labels=lab.max_labels)
    pipeline = Pipeline(store, ledger, rules, model or ChurnModel(), playbook, metrics, silence,
                        policy, labels=labels,
                        holdout=Holdout(pol.holdout_fraction, pol.holdout_salt),
                        risk=RiskHistory(redis, cap=settings.risk_history),
                        partitions=partitions,
                        storm=StormGuard(pol.storm_max_alerts_per_hour),
                        do_not_contact=do_not_contact)
    return pipeline
