"""Integer series keys and repeated-row detection against pandas."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scoring.series_keys import ranked_codes, repeated_rows


@pytest.mark.parametrize("scale", [1, 10**9, 3, 2**40])  # dense, whole seconds, odd steps, beyond the bincount
def test_repeated_rows_match_pandas_duplicated(scale):
    rng = np.random.default_rng(scale % 1000)
    a = rng.integers(0, 50, 20_000)
    b = rng.integers(0, 400, 20_000) * scale + 7
    expected = pd.DataFrame({"a": a, "b": b}).duplicated(keep="first").to_numpy()
    assert expected.any()
    assert (repeated_rows(a, b) == expected).all()
    assert not repeated_rows(np.arange(10), np.zeros(10, dtype=np.int64)).any()


def test_huge_key_spans_fall_back_to_sorting():
    a = np.array([0, 2**40, 0, 5, 2**40])
    b = np.array([2**40, 0, 2**40, 1, 1])
    assert repeated_rows(a, b).tolist() == [False, False, True, False, False]


def test_ranks_sort_like_strings_for_plain_and_dictionary_chunks():
    values = ["b", "a", "é", "B", "a", "10", "9"]
    plain = pa.chunked_array([values[:3], values[3:]])
    dictionary = pa.chunked_array([pa.array(values[:3]).dictionary_encode(), pa.array(values[3:]).dictionary_encode()])
    for column in (plain, dictionary):
        ranks, ordered = ranked_codes(column)
        assert ordered.to_pylist() == sorted(set(values))
        assert [ordered[int(r)].as_py() for r in ranks] == values
