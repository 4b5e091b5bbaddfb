"""Write policy and StorageClass parameters: table-driven, pure."""

from __future__ import annotations

import pytest

from k8s_objects import storage_class, with_
from provisioner import classes, selector
from provisioner.errors import ClaimError
from provisioner.policy import WritePolicy, decide

CI = {"team": "build", "kubernetes.io/metadata.name": "ci"}
PR = {"team": "build", "trust": "untrusted", "kubernetes.io/metadata.name": "ci-pr"}


@pytest.mark.parametrize("params, requested, ns, labels, write, denied", [
    # no restriction: default applies, annotation narrows
    ({}, None, "ci", CI, True, False),
    ({}, True, "ci", CI, True, False),
    ({}, False, "ci", CI, False, False),
    ({"writeDefault": "false"}, None, "ci", CI, False, False),
    ({"writeDefault": "false"}, True, "ci", CI, True, False),
    # read-only class: nobody writes, asking is denied
    ({"readOnly": "true"}, None, "ci", CI, False, False),
    ({"readOnly": "true"}, True, "ci", CI, False, True),
    ({"readOnly": "true", "writeNamespaces": "ci"}, True, "ci", CI, False, True),
    # namespace list
    ({"writeNamespaces": "ci, release"}, None, "ci", CI, True, False),
    ({"writeNamespaces": "ci, release"}, None, "release", {}, True, False),
    ({"writeNamespaces": "ci, release"}, None, "ci-pr", PR, False, False),
    ({"writeNamespaces": "ci, release"}, True, "ci-pr", PR, False, True),
    # label selector on the namespace
    ({"writeNamespaceSelector": "team=build,trust!=untrusted"}, None, "ci", CI, True, False),
    ({"writeNamespaceSelector": "team=build,trust!=untrusted"}, True, "ci-pr", PR, False, True),
    ({"writeNamespaceSelector": "team in (build,release)"}, None, "x", None, False, False),
    # list OR selector
    ({"writeNamespaces": "release", "writeNamespaceSelector": "team=build"}, None, "ci", CI,
     True, False),
    ({"writeNamespaces": "release", "writeNamespaceSelector": "team=web"}, None, "ci", CI,
     False, False),
    # the annotation can narrow a namespace that may write, never widen one that may not
    ({"writeNamespaces": "ci"}, False, "ci", CI, False, False),
])
def test_write_decision(params, requested, ns, labels, write, denied):
    d = decide(WritePolicy.from_parameters(params), requested, ns, labels)
    assert (d.write, d.denied) == (write, denied)
    assert d.reason.startswith("writable" if write else "read-only")


def test_denied_reason_names_the_namespace():
    d = decide(WritePolicy.from_parameters({"writeNamespaces": "ci"}), True, "ci-pr", PR)
    assert "ci-pr" in d.reason


@pytest.mark.parametrize("params, fragment", [
    ({"readOnly": "yes"}, "readOnly"),
    ({"writeDefault": "1"}, "writeDefault"),
    ({"writeNamespaceSelector": "team in (a"}, "writeNamespaceSelector"),
    ({"writeNamespaceSelector": "=x"}, "writeNamespaceSelector"),
])
def test_bad_policy_parameters(params, fragment):
    with pytest.raises(ClaimError) as e:
        WritePolicy.from_parameters(params)
    assert fragment in str(e.value) and e.value.reason == "InvalidStorageClass"


@pytest.mark.parametrize("sc, fragment", [
    (storage_class(writeNamespace="ci"), "unknown parameter(s) writeNamespace"),
    (with_(storage_class(), volumeBindingMode="Immediate"), "WaitForFirstConsumer"),
    (with_(storage_class(), volumeBindingMode=...), "WaitForFirstConsumer"),
    (with_(storage_class(), reclaimPolicy="Retain"), "reclaimPolicy must be Delete"),
    (storage_class(releaseOnPodCompletion="no"), "releaseOnPodCompletion"),
])
def test_bad_storage_classes(sc, fragment):
    with pytest.raises(ClaimError) as e:
        classes.parse(sc)
    assert fragment in str(e.value)
    assert e.value.reason == "InvalidStorageClass"


def test_storage_class_defaults_and_values():
    c = classes.parse(storage_class())
    assert c.release_on_pod_completion and not c.policy.read_only and c.policy.default_write
    c = classes.parse(storage_class("cachesync-ro", readOnly="true",
                                    releaseOnPodCompletion="false"))
    assert c.name == "cachesync-ro" and c.policy.read_only and not c.release_on_pod_completion


def test_is_ours():
    assert classes.is_ours(storage_class())
    assert not classes.is_ours(with_(storage_class(), provisioner="rancher.io/local-path"))
    assert not classes.is_ours(None)


@pytest.mark.parametrize("text, labels, expected", [
    ("", {}, True),
    ("a=b", {"a": "b"}, True),
    ("a==b", {"a": "c"}, False),
    ("a!=b", {}, True),
    ("a", {"a": ""}, True),
    ("!a", {"a": "x"}, False),
    ("a in (x, y)", {"a": "y"}, True),
    ("a notin (x,y)", {"a": "y"}, False),
    ("a notin (x,y)", {}, True),
    ("example.com/tier=gold,env in (ci)", {"example.com/tier": "gold", "env": "ci"}, True),
    ("example.com/tier=gold,env in (ci)", {"example.com/tier": "gold", "env": "pr"}, False),
])
def test_selector(text, labels, expected):
    assert selector.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["a in ()", "a in (b", "a)", "=b", "a b", "a=b c", "a in (b c)"])
def test_selector_errors(text):
    with pytest.raises(ValueError):
        selector.parse(text)
