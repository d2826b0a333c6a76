"""The model's derived inputs: trends against a subscriber's own baseline and the fee change."""
from __future__ import annotations

import math

import numpy as np
import pytest

from features.schema import FEATURES, INDEX
from online_models.learner import example_input
from online_models.model import ChurnModel, _distinct, model_input
from online_models.snapshots import Example, quantise, stored_values


def _row(**values: float) -> np.ndarray:
    row = np.full(len(FEATURES), np.nan)
    row[[INDEX[k] for k in values]] = list(values.values())
    return row


def test_trends_compare_the_last_week_with_the_subscribers_own_four_weeks_before() -> None:
    steady = model_input(_row(data_mb_7d=700.0, data_mb_prev28=2800.0, logins_7d=7.0,
                              logins_prev28=28.0), {})
    assert steady["data_trend"] == pytest.approx(0.0) and steady["logins_trend"] == pytest.approx(0.0)
    falling = model_input(_row(data_mb_7d=70.0, data_mb_prev28=2800.0), {})
    assert falling["data_trend"] == pytest.approx(math.log((10 + 1) / (100 + 1)))
    light = model_input(_row(data_mb_7d=7.0, data_mb_prev28=280.0), {})  # same fall, small user
    assert light["data_trend"] < -1.0
    assert "voice_trend" not in falling  # an input missing: no trend, not a made-up one


def test_fee_change_is_the_plan_fee_against_the_profile_fee() -> None:
    x = model_input(_row(monthly_fee=15.0), {"monthly_fee": 25.0})
    assert x["fee_change"] == pytest.approx(-0.4)
    assert "fee_change" not in model_input(_row(), {"monthly_fee": 25.0})  # no plan change
    assert "fee_change" not in model_input(_row(monthly_fee=15.0), {})  # no profile fee


def test_vectorised_scores_include_the_derived_inputs() -> None:
    rng = np.random.default_rng(5)
    rows = np.abs(rng.normal(20, 15, size=(300, len(FEATURES))))
    rows[rng.random(rows.shape) < 0.15] = np.nan
    attrs = [{"monthly_fee": float(rng.choice((10.0, 30.0)))} if i % 4 else {} for i in range(300)]
    model = ChurnModel()
    for i in range(200):
        model.learn(model_input(rows[i], attrs[i]), bool(rows[i, INDEX["data_mb_7d"]] < 10))
    assert {"data_trend", "voice_trend", "logins_trend", "fee_change"} <= set(model.classifier.weights)
    expected = model.score([model_input(r, a) for r, a in zip(rows, attrs)])
    assert np.allclose(model.score_matrix(rows, attrs), expected, rtol=0, atol=1e-12)
    # the store gives a subscriber's rows one shared dict: scored once, same result
    shared = [attrs[i % 5] for i in range(300)]
    copies = [dict(a) for a in shared]
    assert np.array_equal(model.score_matrix(rows, shared), model.score_matrix(rows, copies))
    assert np.allclose(model.score_matrix(rows, shared),
                       model.score([model_input(r, a) for r, a in zip(rows, shared)]),
                       rtol=0, atol=1e-12)


def test_the_learner_sees_the_derived_inputs_of_the_stored_snapshot() -> None:
    row = _row(data_mb_7d=140.0, data_mb_prev28=2000.0, voice_min_7d=30.0,
               voice_min_prev28=400.0, logins_7d=1.0, logins_prev28=22.0, monthly_fee=18.0)
    attrs = {"monthly_fee": 30.0, "contract_months_left": 1.0}
    stored = stored_values(quantise(row[None, :])[0].tolist())
    learned = example_input(Example("s/1", "s", 1, 2, True, stored, attrs))
    scored = model_input(row, attrs)
    assert learned.keys() == scored.keys()
    for name in ("data_trend", "voice_trend", "logins_trend", "fee_change"):
        assert learned[name] == pytest.approx(scored[name], abs=0.08)  # one-byte codes: ±6 %


def test_windows_still_filling_are_left_out_and_the_history_watched_is_an_input() -> None:
    row = _row(logins_7d=3.0, logins_prev28=0.0, data_mb_7d=500.0, data_mb_prev28=0.0,
               complaints_30d=0.0, spend_count_30d=0.0, recency_days=9.0, tenure_months=20.0,
               history_days=9.0)
    x = model_input(row, {"monthly_charges": 70.0})
    # 9 days watched: the 7-day windows are complete, the 28 days before them and the 30-day
    # counts are not; recency (no spend since the store began watching) says only "≥ 9 days"
    assert x["logins_7d"] == 3.0 and x["data_mb_7d"] == 500.0
    assert not {"logins_prev28", "data_mb_prev28", "complaints_30d", "spend_count_30d",
                "recency_days", "data_trend", "logins_trend", "history_days"} & set(x)
    assert x["history_seen"] == pytest.approx(9 / 35)
    assert x["tenure_months"] == 20.0 and x["attr_monthly_charges"] == 70.0
    spent = model_input(_row(recency_days=2.0, history_days=9.0), {})
    assert spent["recency_days"] == 2.0  # a spend seen 2 days ago: observed, kept
    full = model_input(_row(logins_prev28=0.0, recency_days=40.0, history_days=60.0), {})
    assert full["logins_prev28"] == 0.0 and full["recency_days"] == 40.0
    assert full["history_seen"] == 1.0  # capped: no drift with the stream's age
    unknown = model_input(_row(logins_prev28=4.0), {})  # a snapshot stored without it
    assert unknown["logins_prev28"] == 4.0 and "history_seen" not in unknown


def test_vectorised_scores_leave_out_the_same_filling_windows() -> None:
    rng = np.random.default_rng(11)
    n = 400
    rows = np.abs(rng.normal(20, 15, size=(n, len(FEATURES)))).round()
    rows[:, INDEX["history_days"]] = rng.choice([0, 3, 8, 20, 31, 34, 35, 90, np.nan], size=n)
    rows[:, INDEX["recency_days"]] = np.minimum(rows[:, INDEX["recency_days"]],
                                                np.nan_to_num(rows[:, INDEX["history_days"]],
                                                              nan=1e9))
    model = ChurnModel()
    for i in range(300):  # learns from the filling windows' absence too
        model.learn(model_input(rows[i], {}), bool(rows[i, INDEX["logins_prev28"]] < 15))
    assert "history_seen" in model.classifier.weights
    expected = model.score([model_input(r, {}) for r in rows])
    assert np.allclose(model.score_matrix(rows, [{}] * n), expected, rtol=0, atol=1e-12)
    assert len(np.unique(expected.round(6))) > 50


@pytest.mark.parametrize("inputs", ["signed_log1p", "identity"])
def test_the_vectorised_scorer_is_rivers_own_prediction_on_random_inputs(inputs: str) -> None:
    """score_matrix equals River's scaler + predict_proba_one on the model's input scale, for
    signed, skewed and missing values and attributes, some never learned."""
    rng = np.random.default_rng(11)
    n = 400
    rows = rng.lognormal(2.0, 1.5, size=(n, len(FEATURES))) * rng.choice((-1.0, 1.0), (n, len(FEATURES)))
    rows[:, INDEX["history_days"]] = rng.uniform(0, 90, n)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    attrs = [{"monthly_fee": float(rng.lognormal(3, 0.5)), "flag": float(i % 2),
              "balance": float(rng.normal(0, 500))} | ({"late": 3.0} if i >= 300 else {})
             for i in range(n)]
    model = ChurnModel(inputs=inputs)
    assert model.score_matrix(rows, attrs).tolist() == [0.5] * n  # untrained
    for i in range(300):
        model.learn(model_input(rows[i], attrs[i]), bool(rng.random() < 0.3 + 0.4 * (i % 2)))
    assert abs(model.classifier.weights["attr_flag"]) > 0.01
    expected = np.array([model.classifier.predict_proba_one(model.scaler.transform_one(
        model._read(model._known(model_input(r, a))))).get(True, 0.0)
        for r, a in zip(rows, attrs)])
    assert np.ptp(expected) > 0.1
    assert np.allclose(model.score_matrix(rows, attrs), expected, rtol=0, atol=1e-12)
    assert np.allclose(model.score([model_input(r, a) for r, a in zip(rows, attrs)]), expected,
                       rtol=0, atol=1e-12)


def test_inputs_are_read_on_a_signed_log_scale() -> None:
    """The default model learns sign(x)·log(1 + |x|) of each input: the scaler's statistics are
    of those values, so a tenfold outlier weighs as one more step, not ten."""
    model = ChurnModel()
    assert model.inputs == "signed_log1p"
    model.learn({"tenure_months": 0.0, "attr_balance": -9.0}, False)
    model.learn({"tenure_months": 99.0, "attr_balance": 0.0}, True)
    assert model.scaler.means["tenure_months"] == pytest.approx(math.log(100) / 2)
    assert model.scaler.means["attr_balance"] == pytest.approx(-math.log(10) / 2)
    with pytest.raises(ValueError, match="inputs"):
        ChurnModel(inputs="log")


def _attrs_logit_oracle(model: ChurnModel, attrs: list[dict[str, float]]) -> np.ndarray:
    """The plain reading: each row's attributes, scaled and weighted, summed in dict order."""
    out = []
    for row_attrs in attrs:
        term = 0.0
        for name, value in row_attrs.items():
            key = f"attr_{name}"
            var = model.scaler.vars.get(key, 0.0)
            k = model.classifier.weights.get(key, 0.0) / var**0.5 if var else 0.0
            mean = model.scaler.means.get(key, 0.0) if var else 0.0
            if model.inputs == "signed_log1p":
                value = math.copysign(math.log1p(abs(value)), value)
            term += k * (value - mean)
        out.append(term)
    return np.array(out)


@pytest.mark.parametrize("inputs", ["signed_log1p", "identity"])
def test_attribute_terms_are_exactly_those_of_a_loop_over_each_dict(inputs: str) -> None:
    rng = np.random.default_rng(8)
    names = [f"a{i}" for i in range(12)]
    pool = [{str(name): (float(rng.normal(0, 10) * 10.0 ** rng.integers(-3, 7))
                         if rng.random() < 0.8 else int(rng.integers(-50, 50)))
             for name in rng.permutation(names)[:rng.integers(0, 13)]} for _ in range(40)]
    attrs = [pool[i] for i in rng.integers(0, len(pool), 500)]  # shared dicts, as the store gives
    model = ChurnModel(inputs=inputs, max_attrs=8)  # some attributes never learned
    row = np.full(len(FEATURES), 1.0)
    for i, a in enumerate(attrs[:300]):
        model.learn(model_input(row, a), i % 3 == 0)
    got = model._attrs_logit(*_distinct(attrs))
    assert np.array_equal(got, _attrs_logit_oracle(model, attrs))  # to the last bit
    copies = [dict(a) for a in attrs]
    assert np.array_equal(model._attrs_logit(*_distinct(copies)), got)
