"""The errors the provisioner raises, as one small tree.

    ProvisionerError              base: a one-line message an operator can act on
    ├── ClaimError                a PVC or StorageClass asks for what we cannot do (permanent:
    │                             a Warning event, nothing is made)
    └── KubeError                 the Kubernetes API refused or failed (status, reason, message)
        ├── Unauthorized          401: the service account token is missing or expired
        ├── Forbidden             403: RBAC does not allow it (provisioner/deploy/rbac.yaml)
        ├── NotFound              404: the object is gone
        ├── Conflict              409: stale resourceVersion or already exists (retry)
        │   └── AlreadyExists     409 with reason AlreadyExists
        ├── Invalid               422: the API rejected an object we built (a bug: permanent)
        └── Unavailable           429, 5xx, connection refused or timed out (transient: retry)

Only ``kube.py`` creates ``KubeError``s, from ``ApiException`` or urllib3 errors, with the body's
``message`` cut short; request headers (and so the bearer token) are never part of a message.
"""

from __future__ import annotations

from cachesync.errors import shorten as _shorten

MAX_DETAIL = 300


def shorten(text: str | bytes | None, limit: int = MAX_DETAIL) -> str:
    """One line of at most ``limit`` characters (cachesync's, with the provisioner's limit)."""
    return _shorten(text, limit)


class ProvisionerError(Exception):
    """Base of every error the provisioner raises on purpose."""


class ClaimError(ProvisionerError):
    """A claim or class asks for something cachesync cannot provide; ``reason`` is the event
    reason (CamelCase), the message says what to change."""

    def __init__(self, message: str, reason: str = "ProvisioningFailed"):
        self.reason = reason
        super().__init__(message)


class KubeError(ProvisionerError):
    transient = False

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        self.status = status
        self.reason = reason
        super().__init__(message)


class Unauthorized(KubeError):
    pass


class Forbidden(KubeError):
    pass


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    transient = True


class AlreadyExists(Conflict):
    pass


class Invalid(KubeError):
    pass


class Unavailable(KubeError):
    transient = True
