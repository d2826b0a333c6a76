"""The online churn model: a River pipeline (standard scaling + logistic regression).

It scores every applied event from its feature row and profile attributes, and learns when
the stream reveals a label (a ``churn`` event is positive, ``active`` negative). Scores are
probabilities of churn; explanations are the signed logit contributions of the features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat

import numpy as np
from numba import njit
from river import linear_model, optim, preprocessing

from features.schema import FEATURES, INDEX

# Features that describe the state, not identity or bookkeeping, are stored in snapshots.
SNAPSHOT_FEATURES = tuple(f for f in FEATURES if f != "days_since_plan_change")
# The model's inputs leave out those that look back further than the longest day window
# (35 days, ``FULL_HISTORY_DAYS`` below): spend 2-5 months back and the days since the last
# complaint (unbounded). Until the stream has watched a subscriber that long they read 0 /
# large because nothing was seen yet, so in the first months they drift with the time since
# the stream began and the model learnt *when* a snapshot was taken (docs/model.md: "Does the
# model add recall on the demo?"). Still stored, so this set can change without touching
# stored snapshots.
TIME_LEAKING = frozenset({"spend_m2", "spend_m3", "spend_m4", "spend_m5",
                          "days_since_complaint"})
MODEL_FEATURES = tuple(f for f in SNAPSHOT_FEATURES if f not in TIME_LEAKING)
# Derived inputs, computed from the features above (and the profile's fee) wherever the model
# reads a row, so scoring and learning see the same. A linear model cannot form a ratio: a
# subscriber's trend against its own baseline (last 7 days' daily rate vs the 28 before, log
# ratio, with a floor so near-zero baselines stay finite) compares heavy and light users on one
# scale, and a plan change shows as the fee's change against the profile's fee (the store's
# ``fee_delta`` only compares two plan changes, so a first downgrade reads 0 there).
TRENDS = (("data_trend", "data_mb_7d", "data_mb_prev28", 1.0),
          ("voice_trend", "voice_min_7d", "voice_min_prev28", 1.0),
          ("logins_trend", "logins_7d", "logins_prev28", 0.2))
FEE_CHANGE = "fee_change"
# How long the store has watched the subscriber. A subscriber the operator already knows (its
# profile carries a tenure) is learned from its first snapshot, when its windows are still
# filling: a window needing more days than the store has watched reads low for lack of
# history, not for lack of activity, so the model reads it as missing (left out: it adds
# nothing to the score), and ``recency_days`` too when no spend was seen since the store began
# watching (it then only says how long that was). ``history_days`` itself is not an input (it
# grows with the time since the stream began); ``history_seen``, the share of the longest window
# watched (capped at 1), is, so the model can learn how new subscribers differ. From
# ``FULL_HISTORY_DAYS`` on nothing is left out. Calendar months count as needing the full span.
HISTORY, HISTORY_SEEN = "history_days", "history_seen"
FULL_HISTORY_DAYS = 35  # the longest day window, logins_prev28, reaches 34 days back
WINDOW_DAYS = {"spend_m0": 35, "spend_m1": 35, "logins_7d": 7, "data_mb_7d": 7,
               "voice_min_7d": 7, "complaints_30d": 30, "complaints_network_30d": 30,
               "complaints_billing_30d": 30, "complaints_service_30d": 30,
               "complaints_other_30d": 30, "spend_count_30d": 30, "spend_amount_30d": 30,
               "logins_prev28": 35, "data_mb_prev28": 35, "voice_min_prev28": 35}


def with_derived(x: dict[str, float]) -> dict[str, float]:
    """Add the derived inputs to a model input dict and leave out the windows still filling
    (in place; missing inputs: left out)."""
    history = x.pop(HISTORY, None)
    if history is not None:
        if history < FULL_HISTORY_DAYS:
            for name, days in WINDOW_DAYS.items():
                if history < days:
                    x.pop(name, None)
            if x.get("recency_days", -1.0) >= history:
                x.pop("recency_days", None)
        x[HISTORY_SEEN] = min(history, FULL_HISTORY_DAYS) / FULL_HISTORY_DAYS
    for name, recent, before, floor in TRENDS:
        if recent in x and before in x:
            x[name] = math.log((max(x[recent], 0.0) / 7 + floor)
                               / (max(x[before], 0.0) / 28 + floor))
    fee, base = x.get("monthly_fee"), x.get("attr_monthly_fee")
    if fee is not None and base:
        x[FEE_CHANGE] = fee / base - 1.0
    return x


def model_input(row: np.ndarray, attrs: Mapping[str, float]) -> dict[str, float]:
    """A feature row plus profile attributes as River's dict input (missing values left out)."""
    x = {name: float(row[i]) for i, name in enumerate(FEATURES)
         if name in _INPUTS and not math.isnan(row[i])}
    for name, value in attrs.items():
        x[f"attr_{name}"] = float(value)
    return with_derived(x)


def _filling_masked(matrix: np.ndarray) -> np.ndarray:
    """A copy of feature rows with the windows still filling set missing (NaN), as
    :func:`with_derived` leaves them out."""
    out = matrix.copy()
    history = matrix[:, INDEX[HISTORY]]  # NaN (unknown) compares False: nothing masked
    with np.errstate(invalid="ignore"):
        short = history < FULL_HISTORY_DAYS
        if short.any():
            for name, days in WINDOW_DAYS.items():
                out[history < days, INDEX[name]] = np.nan
            recency = INDEX["recency_days"]
            out[short & (matrix[:, recency] >= history), recency] = np.nan
    return out


def _distinct(attrs: Sequence[Mapping[str, float]]
              ) -> tuple[list[Mapping[str, float]], np.ndarray]:
    """The distinct attribute dicts of rows (by identity: the store gives a subscriber's rows
    one shared dict) and each row's index among them, so per-dict work is done once."""
    ids = np.fromiter(map(id, attrs), np.uint64, len(attrs))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return [attrs[i] for i in first.tolist()], inverse


@njit(cache=True)
def _attr_sums(ends, k, mean, values, log):  # type: ignore[no-untyped-def]
    """Per distinct dict j (its items end at ``ends[j]``): the sum over its items, in order,
    of ``k * (value - mean)``, values read on the signed log scale when ``log``."""
    out = np.empty(len(ends))
    start = 0
    for j in range(len(ends)):
        term = 0.0
        for i in range(start, ends[j]):
            v = values[i]
            if log:
                v = math.copysign(math.log1p(abs(v)), v)
            term += k[i] * (v - mean[i])
        out[j] = term
        start = ends[j]
    return out


def warm_up() -> None:
    """Compile the scoring kernel (or load it from numba's cache) before the first batch."""
    _attr_sums(np.ones(1, np.int64), np.zeros(1), np.zeros(1), np.zeros(1), True)


def _derived_columns(matrix: np.ndarray,
                     attrs: tuple[list[Mapping[str, float]], np.ndarray] | None,
                     ) -> tuple[list[str], np.ndarray]:
    """:func:`with_derived` for a matrix of feature rows, windows still filling already set
    missing (NaN where an input is missing); ``attrs``: the rows' attributes as
    :func:`_distinct` gives them, None when no row has any."""
    history = matrix[:, INDEX[HISTORY]]
    seen = np.minimum(history, FULL_HISTORY_DAYS) / FULL_HISTORY_DAYS  # NaN stays NaN
    col = {name: np.maximum(matrix[:, INDEX[name]], 0.0) for name in  # NaN stays NaN
           ("monthly_fee", *(n for _, r, b, _ in TRENDS for n in (r, b)))}
    out = [np.log((col[r] / 7 + f) / (col[b] / 28 + f)) for _, r, b, f in TRENDS]
    if attrs is None:
        base = np.full(len(matrix), np.nan)
    else:
        distinct, inverse = attrs
        base = np.array([float(a.get("monthly_fee", np.nan)) for a in distinct])[inverse]
    with np.errstate(invalid="ignore", divide="ignore"):
        out.append(np.where(base != 0, matrix[:, INDEX["monthly_fee"]] / base - 1.0, np.nan))
    out.append(seen)
    return [name for name, *_ in TRENDS] + [FEE_CHANGE, HISTORY_SEEN], np.column_stack(out)


_INPUTS = frozenset(MODEL_FEATURES)
ATTR = "attr_"  # a profile attribute's input name: ATTR + its key
MAX_ATTRS = 64
# How the model reads an input value before scaling it. Counts, money and days are skewed (a
# few subscribers with 10× the median), and a linear model on the raw values spends its few
# early labels on the tail: on a signed log scale, sign(x)·log(1 + |x|) (monotone, 0 stays 0,
# a 0/1 flag is only rescaled), it ranks better from fewer labels (docs/model.md, "Model
# quality"). ``identity`` is how versions written before this were learned.
SIGNED_LOG, IDENTITY = "signed_log1p", "identity"
INPUT_SCALES = (SIGNED_LOG, IDENTITY)


def signed_log(x: Mapping[str, float]) -> dict[str, float]:
    """sign(v)·log(1 + |v|) of every input value."""
    return {name: math.copysign(math.log1p(abs(v)), v) for name, v in x.items()}


class ChurnModel:
    """Scaler + logistic regression learning online from labelled snapshots.

    Defaults tuned by prequential evaluation (``churnwatch evaluate``, online_models/evaluate.py)
    on the IBM Telco table streamed as events: plain SGD keeps adapting to drift (unlike
    AdaGrad, whose steps shrink for ever), at a weight learning rate of 0.005; the former 0.05
    overshoots on standardised inputs (second-half prequential ROC AUC 0.822 → 0.847, batch
    logistic regression 0.846 in 5-fold CV). The intercept learns 10× faster (0.05; River's
    default is 0.01) so it tracks the churn base rate: log loss 0.471 → 0.430. Inputs are
    read on a signed log scale (``inputs``, :data:`INPUT_SCALES`): on the Telco table in the
    order operators' BSS gives it (``benchmarks/bench_telco_feed.py``) second-half ROC AUC
    0.828 → 0.836 (seeds 7, 1, 2: +0.007 to +0.008), where AdaGrad, FTRL-Proximal and a
    periodic exact refit gained 0.003 at most (``benchmarks/telco_candidates.py``).
    """

    def __init__(self, version: str = "lr-2", learning_rate: float = 0.005,
                 intercept_lr: float = 0.05, max_attrs: int = MAX_ATTRS,
                 allowed_attrs: Iterable[str] | None = None, inputs: str = SIGNED_LOG) -> None:
        if inputs not in INPUT_SCALES:
            raise ValueError(f"inputs must be one of {INPUT_SCALES}, not {inputs!r}")
        self.version = version
        self.inputs = inputs
        self.scaler = preprocessing.StandardScaler()
        self.classifier = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate),
                                                          intercept_lr=intercept_lr)
        self.labels_seen = 0
        self.positives = 0
        self.limit_attrs(max_attrs, allowed_attrs)

    def limit_attrs(self, max_attrs: int = MAX_ATTRS,
                    allowed_attrs: Iterable[str] | None = None) -> None:
        """Which profile attributes the model may learn as inputs: those of
        ``allowed_attrs`` if given (an allow-list), otherwise the first ``max_attrs``
        distinct ones it learns; never more than ``max_attrs`` in all. Attributes it has
        already learned stay inputs. Bounds the model's size whatever the feeds send."""
        self.max_attrs = max_attrs
        self.allowed_attrs = (None if allowed_attrs is None
                              else frozenset(ATTR + name for name in allowed_attrs))

    def _known(self, x: Mapping[str, float]) -> Mapping[str, float]:
        """``x`` without the attributes the model never learned (they would add nothing to
        a score, but River's scaler would remember each name it is asked about)."""
        counts = self.scaler.counts
        if all(name in counts or not name.startswith(ATTR) for name in x):
            return x
        return {name: v for name, v in x.items() if name in counts or not name.startswith(ATTR)}

    def _admitted(self, x: Mapping[str, float]) -> Mapping[str, float]:
        """``x`` with only the attributes the model learns (see :meth:`limit_attrs`)."""
        counts = self.scaler.counts
        new = [name for name in x if name.startswith(ATTR) and name not in counts]
        if not new:
            return x
        if self.allowed_attrs is not None:
            new = [name for name in new if name in self.allowed_attrs]
        room = self.max_attrs - sum(1 for name in counts if name.startswith(ATTR))
        admitted = set(sorted(new)[:max(room, 0)])
        return {name: v for name, v in x.items()
                if name in counts or not name.startswith(ATTR) or name in admitted}

    def _read(self, x: Mapping[str, float]) -> Mapping[str, float]:
        """An input dict on the model's input scale (:data:`INPUT_SCALES`)."""
        return signed_log(x) if self.inputs == SIGNED_LOG else x

    def score(self, xs: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Churn probability for each input (0.5 before the model has learned anything)."""
        out = np.empty(len(xs), dtype=np.float64)
        transform, predict = self.scaler.transform_one, self.classifier.predict_proba_one
        for i, x in enumerate(xs):
            out[i] = predict(transform(self._read(self._known(x)))).get(True, 0.0)
        return out

    def score_matrix(self, matrix: np.ndarray,
                     attrs: Sequence[Mapping[str, float]]) -> np.ndarray:
        """:meth:`score` for feature rows and their attributes, vectorised: the same scaling,
        weights and clamped sigmoid as River's pipeline, without building per-row dicts."""
        means, vars_ = self.scaler.means, self.scaler.vars
        weights = self.classifier.weights
        cols = [i for i, name in enumerate(FEATURES) if name in _INPUTS and name != HISTORY]
        matrix = _filling_masked(matrix)
        distinct = _distinct(attrs) if any(attrs) else None
        derived_names, derived = _derived_columns(matrix, distinct)
        names = [FEATURES[i] for i in cols] + derived_names
        mean = np.array([means.get(n, 0.0) for n in names])
        std = np.sqrt(np.array([vars_.get(n, 0.0) for n in names]))
        w = np.array([weights.get(n, 0.0) for n in names])
        x = np.column_stack([matrix[:, cols], derived])
        if self.inputs == SIGNED_LOG:
            x = np.copysign(np.log1p(np.abs(x)), x)  # NaN (missing) stays NaN
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where((std > 0) & ~np.isnan(x), (x - mean) / np.where(std > 0, std, 1.0), 0.0)
        logit = z @ w + self.classifier.intercept
        if distinct is not None:
            logit += self._attrs_logit(*distinct)
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-logit))
        return np.where(logit < -30, 0.0, np.where(logit > 30, 1.0, p))

    def _attrs_logit(self, distinct: Sequence[Mapping[str, float]], inverse: np.ndarray
                     ) -> np.ndarray:
        """Each row's logit term from its attributes (:func:`_distinct`: each distinct dict
        is summed once, then spread to its rows with numpy). A measured hot path: the dicts'
        items are flattened at C speed and summed by a numba loop, in each dict's order with
        the same operations as Python's (to the last bit); the Python loop over the items was
        about a fifth of a live-sized batch's scoring and deciding."""
        means, vars_, weights = self.scaler.means, self.scaler.vars, self.classifier.weights
        scale: dict[str, float] = {}  # attribute → weight / std
        centre: dict[str, float] = {}  # attribute → mean
        for key, v in vars_.items():
            if v and key.startswith("attr_"):
                scale[key[5:]] = weights.get(key, 0.0) / v**0.5
                centre[key[5:]] = means.get(key, 0.0)
        names: list[str] = []
        values: list[float] = []
        for row_attrs in distinct:
            names += row_attrs
            values += row_attrs.values()
        ends = np.cumsum(np.fromiter(map(len, distinct), np.int64, len(distinct)))
        k = np.fromiter(map(scale.get, names, repeat(0.0)), np.float64, len(names))
        mean = np.fromiter(map(centre.get, names, repeat(0.0)), np.float64, len(names))
        sums = _attr_sums(ends, k, mean, np.array(values, np.float64),
                          self.inputs == SIGNED_LOG)
        return sums[inverse]

    def label_counts(self) -> tuple[int, int]:
        """(positive, negative) labels learned so far."""
        return self.positives, self.labels_seen - self.positives

    def learn(self, x: Mapping[str, float], churned: bool) -> None:
        """Learn from one labelled snapshot (only the attributes admitted as inputs)."""
        x = self._read(self._admitted(x))
        self.scaler.learn_one(x)
        self.classifier.learn_one(self.scaler.transform_one(x), churned)
        self.labels_seen += 1
        self.positives += int(churned)

    def explain(self, x: Mapping[str, float], top: int = 3) -> list[dict[str, float]]:
        """The ``top`` features by absolute contribution to the logit, with their values."""
        scaled = self.scaler.transform_one(self._read(self._known(x)))
        weights = self.classifier.weights
        contributions = sorted(
            ((name, weights.get(name, 0.0) * value) for name, value in scaled.items()),
            key=lambda item: -abs(item[1]),
        )
        return [{"feature": name, "value": float(x[name]), "contribution": round(c, 6)}
                for name, c in contributions[:top] if c != 0.0]
