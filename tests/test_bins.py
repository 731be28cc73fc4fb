import numpy as np
import pytest

from agelab.bins import DECADES, EQUAL12, GROUPS10, BinScheme, get_scheme


def test_groups10_boundaries_including_0_and_116():
    ages = [0, 1, 2, 3, 4, 8, 9, 13, 14, 18, 19, 24, 25, 34, 35, 44, 45, 58, 59, 116]
    expected = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    assert GROUPS10.bin_of(ages).tolist() == expected
    assert GROUPS10.labels[0] == "Baby (0-1)" and GROUPS10.labels[-1] == "Senior (59+)"


def test_equal12_and_decades():
    assert EQUAL12.num_bins == 12
    assert EQUAL12.bin_of([1, 3, 4, 10, 11, 73, 74, 116]).tolist() == [0, 0, 1, 1, 2, 10, 11, 11]
    assert EQUAL12.ranges[3] == "18-22"
    assert DECADES.bin_of([0, 9, 10, 99, 100, 116]).tolist() == [0, 0, 1, 9, 10, 10]


def test_custom_edges_and_spec_round_trip():
    scheme = get_scheme("0,3,13,20,40,60")
    assert scheme.labels == ["0-2", "3-12", "13-19", "20-39", "40-59", "60+"]
    assert get_scheme(scheme.spec) == scheme
    assert get_scheme("groups10") is GROUPS10


def test_the_old_scheme_name_loads_and_is_saved_under_the_new_one():
    # Saved runs and the shipped model's sidecar still say "seed10".
    assert get_scheme("seed10") is GROUPS10 and get_scheme("seed10").spec == "groups10"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("1,5,10", "first edge must be 0"),
        ("0,10,5", "strictly increasing"),
        ("0,x", "must be an integer"),
        ("quartiles", "unknown bin scheme 'quartiles'"),
        ("0,200", "at most 116"),
    ],
)
def test_bad_edges_are_rejected_with_a_clear_message(spec, message):
    with pytest.raises(ValueError, match=message):
        get_scheme(spec)


def test_bin_distance_is_the_index_difference():
    assert BinScheme.distance(np.array([2, 5]), np.array([4, 3])).tolist() == [2, -2]
