"""Snapshot values as the model sees them: quantisation exact for small values and within 6 %
beyond, and the time-leaking inputs the model leaves out though snapshots store them."""

from __future__ import annotations


def test_quantisation_is_exact_for_small_values_and_within_six_percent_beyond() -> None:
    import numpy as np

    from features.schema import FEATURES
    from online_models.snapshots import COLUMNS, decoded, quantise, stored_values

    values = np.array([-250.0, -40.0, -16.0, -3.0, 0.0, 0.4, 7.0, 63.0, 64.0, 150.0, 1499.5,
                       42_000.0, 90_000.0, np.nan])
    matrix = np.zeros((len(values), len(FEATURES)))
    matrix[:, COLUMNS[0]] = values
    codes = stored_values(quantise(matrix)[:, 0].tolist())
    assert all(c is None or -32 <= c <= 127 for c in codes)  # one msgpack byte each
    assert codes[-1] is None
    for value, code in zip(values[:-1].tolist(), codes[:-1]):
        back = decoded(code)
        if -16 <= value <= 63:
            assert back == round(value)
        else:
            assert abs(back - value) <= 0.065 * abs(value), (value, back)
