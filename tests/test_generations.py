import pytest

from cachesync.generations import (Generation, newest, next_generation, parse_tags,
                                   should_move_latest)


def test_tag_round_trip_and_order():
    g = Generation(7, "ab12")
    assert g.tag == "g00000007-ab12"
    assert Generation.parse(g.tag) == g
    assert sorted([Generation(10, "a"), Generation(9, "z"), Generation(10, "0")]) == [
        Generation(9, "z"), Generation(10, "0"), Generation(10, "a")]
    # tags sort lexicographically in generation order, as registries list them
    tags = [Generation(n, "n").tag for n in (1, 10, 2, 100)]
    assert sorted(tags) == [Generation(n, "n").tag for n in (1, 2, 10, 100)]


@pytest.mark.parametrize("tag", ["latest", "g1-a", "g00000001", "g00000001-A", "x00000001-a",
                                 "g00000001-a-b", ""])
def test_foreign_tags_are_not_generations(tag):
    assert Generation.parse(tag) is None


def test_parse_tags_and_newest():
    gens = parse_tags(["latest", "g00000002-b", "g00000001-a", "v1"])
    assert gens == [Generation(1, "a"), Generation(2, "b")]
    assert newest(gens) == Generation(2, "b")
    assert newest([]) is None


@pytest.mark.parametrize("known,expected", [
    ((), 1),
    ((None,), 1),
    ((Generation(4, "a"),), 5),
    ((Generation(4, "a"), Generation(9, "b"), None), 10),
])
def test_next_generation(known, expected):
    assert next_generation("me", *known) == Generation(expected, "me")


@pytest.mark.parametrize("candidate,current,moves", [
    (Generation(1, "a"), None, True),
    (Generation(2, "a"), Generation(1, "b"), True),
    (Generation(1, "a"), Generation(2, "b"), False),
    (Generation(2, "a"), Generation(2, "a"), False),
    (Generation(2, "b"), Generation(2, "a"), True),
])
def test_latest_only_moves_forward(candidate, current, moves):
    assert should_move_latest(candidate, current) is moves
