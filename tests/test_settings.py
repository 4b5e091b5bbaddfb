from pathlib import Path

import pytest

from cachesync.errors import ConfigError
from cachesync.settings import build, parse_registry, parse_size


def test_defaults():
    s = build({}, {})
    assert s.root == Path("/var/lib/cachesync")
    assert s.registry is None
    assert s.commit_on == "success" and s.max_layers == 16


def test_precedence_flag_env_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("root: /from/file\nmax_layers: 5\nregistry:\n  url: reg.example:5000/pfx\n"
                   "  insecure: true\nsync:\n  warm: [a/b]\n")
    s = build({"config": str(cfg)}, {"CACHESYNC_ROOT": "/from/env"})
    assert s.root == Path("/from/env")
    assert s.max_layers == 5
    assert s.registry.host == "reg.example:5000" and s.registry.prefix == "pfx"
    assert s.registry.insecure is True
    assert s.sync.warm == ("a/b",)
    s = build({"config": str(cfg), "root": "/from/flag"}, {"CACHESYNC_ROOT": "/from/env"})
    assert s.root == Path("/from/flag")


def test_password_is_never_in_repr():
    s = build({}, {"CACHESYNC_REGISTRY": "r:5000/p", "CACHESYNC_REGISTRY_USERNAME": "u",
                   "CACHESYNC_REGISTRY_PASSWORD": "s3cret-value"})
    assert s.registry.password == "s3cret-value"
    assert "s3cret-value" not in repr(s)


@pytest.mark.parametrize("url,host,prefix", [
    ("127.0.0.1:5000/cachesync", "127.0.0.1:5000", "cachesync"),
    ("registry.local/a/b", "registry.local", "a/b"),
    ("registry.local", "registry.local", ""),
])
def test_parse_registry(url, host, prefix):
    assert parse_registry(url) == (host, prefix)


@pytest.mark.parametrize("url", ["http://r:5000/p", "r:5000/Upper", "/p", "r:x/p", "r/p//q"])
def test_parse_registry_rejects(url):
    with pytest.raises(ConfigError, match="registry"):
        parse_registry(url)


@pytest.mark.parametrize("env,match", [
    ({"CACHESYNC_COMMIT_ON": "sometimes"}, "commit-on"),
    ({"CACHESYNC_MAX_LAYERS": "x"}, "max layers"),
    ({"CACHESYNC_MAX_LAYERS": "1"}, "max layers"),
    ({"CACHESYNC_REGISTRY": "r/p", "CACHESYNC_INSECURE": "maybe"}, "insecure"),
    ({"CACHESYNC_REGISTRY": "r/p", "CACHESYNC_REGISTRY_USERNAME": "u"}, "credentials"),
    ({"CACHESYNC_REGISTRY": "r/p", "CACHESYNC_COMPRESSION": "lz4"}, "compression"),
    ({"CACHESYNC_NODE_ID": "Node_1"}, "node id"),
])
def test_bad_settings_are_clear_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        build({}, env)


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        build({"config": str(bad)}, {})
    with pytest.raises(ConfigError, match="cannot read"):
        build({"config": str(tmp_path / "missing.yaml")}, {})


@pytest.mark.parametrize("text,value", [("1024", 1024), ("1Ki", 1024), ("2G", 2 * 10**9),
                                        ("20Gi", 20 * 2**30)])
def test_parse_size(text, value):
    assert parse_size(text) == value
