"""status: what a node holds, with and without a registry to ask."""

from __future__ import annotations

import json

from cachesync import status, store, volume
from cachesync.errors import RegistryUnavailable, Unauthorized
from cachesync.generations import Generation
from cachesync.names import CacheRef

REF = CacheRef("ns", "cache")


def test_empty_node(make_node):
    node = make_node("empty")
    report = status.collect(node)
    assert report.to_json() == {"node": "empty", "root": str(node.state.root), "caches": [],
                                "volumes": []}
    assert "no caches" in report.to_text()


def test_caches_and_volumes(make_node, commit_files, vol_spec):
    node = make_node("n1")
    commit_files(node, {"a": "x" * 5000})
    commit_files(node, {"b": "y" * 3000})
    commit_files(node, {"c": "1"}, cache="other", namespace="team")
    for entry in node.journal.pending():
        if entry.ref == REF and entry.tag == "g00000001-n1":
            node.journal.drop(entry)       # published
    v1, v2 = vol_spec("v1"), vol_spec("v2", write=False)
    volume.setup(node, v1)
    volume.setup(node, v2)
    fresh = vol_spec("fresh", cache="brand-new")   # a cache with a volume but no generation yet
    volume.setup(node, fresh)

    data = status.collect(node).to_json()
    json.dumps(data)   # plain JSON
    caches = {(c["namespace"], c["name"]): c for c in data["caches"]}
    assert list(caches) == [("ns", "brand-new"), ("ns", "cache"), ("team", "other")]
    c = caches[("ns", "cache")]
    newest_image = store.newest_local(node, REF)[1]
    assert c["generation"] == "g00000002-n1" and c["generations"] == 2
    assert c["layers"] == 2 and c["volumes"] == 2
    assert c["size_bytes"] == store.image_size(node, newest_image.id) > 8000
    assert c["pending"] == ["g00000002-n1"]
    assert c["last_commit"].endswith("Z") and c["remote_generation"] is None
    assert caches[("team", "other")]["volumes"] == 0
    assert caches[("ns", "brand-new")]["generation"] is None
    assert caches[("ns", "brand-new")]["volumes"] == 1
    vols = {v["vol_name"]: v for v in data["volumes"]}
    assert sorted(vols) == ["fresh", "v1", "v2"]
    assert vols["v1"]["writable"] and not vols["v2"]["writable"]
    assert vols["v1"]["base"] == "g00000002-n1" and vols["v1"]["mounted"]

    text = status.collect(node).to_text()
    assert "ns/cache" in text and "g00000002-n1" in text and "team/other" in text
    assert "v2  ns/cache@g00000002-n1  read-only" in text
    assert "REMOTE" not in text
    for spec in (v1, v2, fresh):
        volume.teardown(node, spec)
    assert status.collect(node).to_json()["volumes"] == []


def test_remote_generation_and_unreachable_registry(make_node, commit_files):
    node = make_node("n1")
    commit_files(node, {"a": "1"})
    commit_files(node, {"b": "1"}, cache="other")
    asked = []

    def lookup(ref: CacheRef):
        asked.append(ref)
        return Generation(7, "remote") if ref == REF else None

    data = status.collect(node, lookup).to_json()
    assert sorted(asked) == [REF, CacheRef("ns", "other")]
    gens = {c["name"]: c["remote_generation"] for c in data["caches"]}
    assert gens == {"cache": "g00000007-remote", "other": None}

    def down(ref: CacheRef):
        raise RegistryUnavailable("registry 127.0.0.1:1 unreachable: connection refused")

    report = status.collect(node, down)
    assert all(c.remote_error and c.remote_generation is None for c in report.caches)
    text = report.to_text()
    assert "unreachable" in text and "connection refused" in text

    def denied(ref: CacheRef):
        if ref == REF:
            raise Unauthorized("401: credentials rejected")
        return Generation(1, "x")

    data = status.collect(node, denied).to_json()
    assert [(c["name"], c["remote_generation"], bool(c["remote_error"]))
            for c in data["caches"]] == [("cache", None, True), ("other", "g00000001-x", False)]
