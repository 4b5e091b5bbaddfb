import pytest

from cachesync.errors import UsageError
from cachesync.names import CacheRef, validate_cache_name, validate_namespace


@pytest.mark.parametrize("ns", ["a", "team-a", "ci", "a1", "x" * 63])
def test_valid_namespaces(ns):
    assert validate_namespace(ns) == ns


@pytest.mark.parametrize("ns", ["", "A", "-a", "a-", "a_b", "a.b", "x" * 64, "a/b", "ä"])
def test_invalid_namespaces(ns):
    with pytest.raises(UsageError, match="invalid namespace"):
        validate_namespace(ns)


@pytest.mark.parametrize("name", ["m2", "npm-cache", "go.mod", "a_b", "0", "a" * 128])
def test_valid_cache_names(name):
    assert validate_cache_name(name) == name


@pytest.mark.parametrize("name", ["", "Maven", ".hidden", "-x", "_x", "a/b", "a" * 129, "a..b",
                                  "a b", "a:b", "a\n"])
def test_invalid_cache_names(name):
    with pytest.raises(UsageError, match="invalid cache name"):
        validate_cache_name(name)


def test_cache_ref_spellings():
    ref = CacheRef.parse("team-a/maven")
    assert ref == CacheRef("team-a", "maven")
    assert str(ref) == "team-a/maven"
    assert ref.repository("cachesync") == "cachesync/team-a/maven"
    assert ref.repository("org/caches/") == "org/caches/team-a/maven"
    assert ref.local_image("latest") == "localhost/cachesync/team-a/maven:latest"
    assert ref.key == "team-a__maven"


@pytest.mark.parametrize("text", ["maven", "a/b/c", "/maven", "Team/maven", "a/.."])
def test_cache_ref_parse_rejects(text):
    with pytest.raises(UsageError):
        CacheRef.parse(text)
