"""Every name the provisioner puts on Kubernetes objects: provisioner, annotations, labels,
finalizers. One place, so the docs, the manifests and the code cannot drift apart."""

PROVISIONER = "cachesync.io/cache"

# PVC annotations a user sets.
CACHE_NAME = "cachesync.io/cache-name"          # default: the claim's name
WRITE = "cachesync.io/write"                    # "true" | "false": may only narrow the policy

# Annotations set by Kubernetes.
SELECTED_NODE = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PVC_PROTECTION = "kubernetes.io/pvc-protection"

# Annotations the provisioner keeps on PVCs, PVs and helper Pods.
VOLUME_PREFIX = "cachesync.io/volume-"           # the VolumeRecord (see volume.py)
JOB_RESULT = "cachesync.io/job-result"           # on the PV: what teardown passes as JOB_RESULT
LAST_FAILED_POD = "cachesync.io/last-failed-pod"  # uid of the helper failure already counted


def failures_key(action: str) -> str:
    """Failed helper Pods of ``action`` (setup, teardown, cleanup) so far."""
    return f"cachesync.io/{action}-failures"


def retry_after_key(action: str) -> str:
    """RFC 3339 time before which no new ``action`` helper Pod is started."""
    return f"cachesync.io/{action}-retry-after"

# Finalizers.
CLAIM_FINALIZER = "cachesync.io/provisioning"    # on a PVC until its PV exists (or cleanup ran)
VOLUME_FINALIZER = "cachesync.io/teardown"       # on a PV until teardown ran on its node

# Labels on helper Pods and PVs.
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "cachesync-provisioner"
ACTION = "cachesync.io/action"                   # setup | teardown | cleanup
FOR_VOLUME = "cachesync.io/volume"               # the PV name the helper works for
CLAIM_NAMESPACE = "cachesync.io/claim-namespace"
CLAIM_NAME = "cachesync.io/claim-name"
HOSTNAME_LABEL = "kubernetes.io/hostname"
