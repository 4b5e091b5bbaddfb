import pytest

from cachesync.generations import (Generation, latest_repair, newest, next_generation,
                                   parse_tags, should_move_latest)


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


@pytest.mark.parametrize("tags,latest,target", [
    # two writers raced and the older one wrote last: back to the newest tag
    (["g00000005-a", "g00000006-a", "g00000007-b", "latest"], Generation(6, "a"),
     Generation(7, "b")),
    # same number, the node id breaks the tie
    (["g00000007-a", "g00000007-b"], Generation(7, "a"), Generation(7, "b")),
    # latest names no generation (missing, or a manifest without our annotation)
    (["g00000001-a"], None, Generation(1, "a")),
    # already right
    (["g00000006-a", "g00000007-b", "latest"], Generation(7, "b"), None),
    # latest names a generation whose tag was pruned or never listed: never move back
    (["g00000003-a"], Generation(4, "b"), None),
    # no generation tags at all (foreign tags only, or an empty repository)
    (["latest", "v1"], Generation(2, "a"), None),
    ([], None, None),
])
def test_latest_repair_points_latest_at_the_newest_tag(tags, latest, target):
    assert latest_repair(tags, latest) == target
