"""Contact policy: do-not-contact, monthly caps, quiet hours; internal actions always go."""

from __future__ import annotations

from datetime import datetime, timezone

from alerting.alert import Action
from alerting.policy import ContactPolicy, apply_policy

OFFER = Action("personal_offer", "retention-offers", 24, channel="message", offer=True)
CALL = Action("care_callback", "customer-care", 24, channel="call")
FIX = Action("network_fix", "network-ops", 72)
NOON = int(datetime(2026, 5, 10, 12, tzinfo=timezone.utc).timestamp() * 1000)
LATE_EVENING = int(datetime(2026, 5, 10, 22, 30, tzinfo=timezone.utc).timestamp() * 1000)


def test_do_not_contact_keeps_internal_actions_only() -> None:
    entries: dict[str, bytes] = {}
    kept, withheld, changed = apply_policy(ContactPolicy(), [OFFER, CALL, FIX], entries, "+1",
                                           "202605", NOON, {"+1"})
    assert kept == [FIX]
    assert withheld == [{"id": "personal_offer", "reason": "do-not-contact"},
                        {"id": "care_callback", "reason": "do-not-contact"}]
    assert changed == {} and entries == {}


def test_monthly_caps_count_across_alerts_and_reset_next_month() -> None:
    policy = ContactPolicy(max_contacts_per_month=3, max_offers_per_month=1)
    entries: dict[str, bytes] = {}
    kept, _, changed = apply_policy(policy, [OFFER, CALL], entries, "+1", "202605", NOON, ())
    assert kept == [OFFER, CALL]
    assert changed == {"cap:contact:202605": b"2", "cap:offer:202605": b"1"}
    kept, withheld, changed = apply_policy(policy, [OFFER, CALL, CALL], entries, "+1", "202605",
                                           NOON, ())
    assert kept == [CALL]
    assert withheld == [{"id": "personal_offer", "reason": "monthly offer cap"},
                        {"id": "care_callback", "reason": "monthly contact cap"}]
    assert changed == {"cap:contact:202605": b"3"}
    kept, withheld, _ = apply_policy(policy, [OFFER], entries, "+1", "202606", NOON, ())
    assert kept == [OFFER] and withheld == []


def test_quiet_hours_hold_contacts_until_morning_in_the_operators_zone() -> None:
    kept, _, _ = apply_policy(ContactPolicy(), [CALL, FIX], {}, "+1", "202605", LATE_EVENING, ())
    morning = int(datetime(2026, 5, 11, 8, tzinfo=timezone.utc).timestamp() * 1000)
    assert kept[0].not_before == morning and kept[1].not_before is None
    assert ContactPolicy().quiet_until(NOON) is None
    paris = ContactPolicy(timezone="Europe/Paris")  # 12:00 UTC is 14:00 in Paris: not quiet
    assert paris.quiet_until(NOON) is None
    assert paris.quiet_until(LATE_EVENING) == int(
        datetime(2026, 5, 11, 6, tzinfo=timezone.utc).timestamp() * 1000)  # 08:00 CEST
