"""A model version as plain data: what the River pipeline learned, never code.

A version is one JSON document (readable with ``redis-cli GET``): the format, the River
version that wrote it, the stream position learned up to, and the model's numbers: the
scaler's per-feature count, mean and variance, the logistic regression's weights and
intercept, its learning rates and step count, the label counts and the scale the inputs are
read on (``inputs``). Loading decodes it into
strictly typed structs (finite floats, bounded names and sizes, no unknown fields) and
rebuilds the River pipeline from the numbers. Anything else under a version key, a pickle of
an earlier release or a value planted by someone with write access to Redis, is refused
with :class:`ModelFormatError`: it is never unpickled or evaluated.
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated, Literal

import msgspec
from river import preprocessing
from river.utils import VectorDict

from churnwatch.core.errors import ChurnwatchError
from online_models.model import IDENTITY, ChurnModel

FORMAT = "churnwatch-model/1"
MAX_BLOB_BYTES = 16 << 20  # far above a model of capped inputs (docs/model.md: ~10 KB)
MAX_FEATURES = 4096  # names per map; the model has ~40 features and at most model_max_attrs
_PICKLE_PREFIXES = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


class ModelFormatError(ChurnwatchError):
    """A stored model version that is not a valid churnwatch model document (a pickle, a
    foreign or corrupted value): refused, never unpickled."""


_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]  # "attr_" + a 64-char key
_Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0, le=1e300)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 53)]
_Rate = Annotated[float, msgspec.Meta(ge=0, le=10)]


class Scaler(msgspec.Struct, forbid_unknown_fields=True):
    """River's ``StandardScaler`` running statistics, per feature."""

    counts: Annotated[dict[_Name, _Count], msgspec.Meta(max_length=MAX_FEATURES)]
    means: Annotated[dict[_Name, _Finite], msgspec.Meta(max_length=MAX_FEATURES)]
    vars: Annotated[dict[_Name, _NonNegative], msgspec.Meta(max_length=MAX_FEATURES)]


class Model(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`~online_models.model.ChurnModel`'s learned state and hyperparameters."""

    version: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    learning_rate: _Rate
    intercept_lr: _Rate
    steps: _Count  # the SGD optimizer's iteration count
    intercept: _Finite
    weights: Annotated[dict[_Name, _Finite], msgspec.Meta(max_length=MAX_FEATURES)]
    scaler: Scaler
    labels_seen: _Count
    positives: _Count
    # the input scale the weights were learned on; documents written before it was recorded
    # were learned on raw values
    inputs: Literal["signed_log1p", "identity"] = IDENTITY


class Version(msgspec.Struct, forbid_unknown_fields=True):
    """One stored model version."""

    format: Literal["churnwatch-model/1"]
    river: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    offset: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")]
    model: Model


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Version)


def river_version() -> str:
    return metadata.version("river")


def encode(model: ChurnModel, offset: str) -> bytes:
    """``model`` and the examples-stream position it learned up to, as a JSON document."""
    scaler, classifier = model.scaler, model.classifier
    counts = {name: int(n) for name, n in scaler.counts.items() if n}
    # transform_one reads the defaultdicts, adding zero entries for names never learned
    means = {name: float(scaler.means[name]) for name in counts}
    vars_ = {name: float(scaler.vars[name]) for name in counts}
    state = Model(model.version, float(classifier.optimizer.lr.learning_rate),
                  float(classifier.intercept_lr.learning_rate),
                  int(classifier.optimizer.n_iterations), float(classifier.intercept),
                  {name: float(w) for name, w in classifier.weights.items()},
                  Scaler(counts, means, vars_), int(model.labels_seen), int(model.positives),
                  model.inputs)
    return _encoder.encode(Version(FORMAT, river_version(), offset, state))


def decode(blob: bytes, what: str = "model version") -> tuple[ChurnModel, str]:
    """The model and stream position of an encoded version; :class:`ModelFormatError` for
    anything else (``what`` names the value in the message)."""
    if len(blob) > MAX_BLOB_BYTES:
        raise ModelFormatError(f"{what} refused: {len(blob)} bytes, more than a model "
                               f"document may have ({MAX_BLOB_BYTES})")
    if blob.startswith(_PICKLE_PREFIXES):
        raise ModelFormatError(f"{what} refused: it is a Python pickle (a version of a "
                               "release before model documents, or a value planted in "
                               "Redis); pickles are never loaded. Fix: promote a version "
                               "listed by `churnwatch model list`, or let the learner "
                               "publish a new one")
    try:
        version = _decoder.decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ModelFormatError(f"{what} refused: not a {FORMAT} document "
                               f"({str(exc)[:200]})") from None
    return _rebuilt(version.model), version.offset


def _rebuilt(state: Model) -> ChurnModel:
    model = ChurnModel(state.version, state.learning_rate, state.intercept_lr,
                       inputs=state.inputs)
    model.scaler = preprocessing.StandardScaler._from_state(  # River's resume API (private name)
        state.scaler.counts, state.scaler.means, state.scaler.vars)
    classifier = model.classifier
    classifier._weights = VectorDict(state.weights)  # no public setter
    classifier.intercept = state.intercept
    classifier.optimizer.n_iterations = state.steps
    model.labels_seen, model.positives = state.labels_seen, state.positives
    return model
