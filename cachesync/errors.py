"""The errors cachesync raises, as one small tree.

    CachesyncError                 base: a one-line message a user can act on
    ├── UsageError                 bad input (names, flags, variables); nothing was touched
    ├── ConfigError                settings that cannot work together (bad file, bad registry)
    ├── LockTimeout                another process holds a per-cache lock too long
    ├── BuildahError               the buildah (or skopeo) CLI failed: returncode + short stderr
    ├── MountError                 a mount or unmount syscall failed
    ├── VolumeError                a volume's own state forbids the operation
    └── RegistryError              the OCI registry refused or failed (carries the OCI code)
        ├── RegistryUnavailable    transient: refused, timed out, 5xx, 429 (safe to retry)
        ├── Unauthorized           401/403: wrong or missing credentials
        ├── NotFound               404: no such repository, manifest or blob
        └── DigestMismatch         content does not hash to its digest (corrupt or malicious)

Adapters translate lower errors into the most specific class, always with ``raise ... from``.
Messages never contain credentials, and command output is cut short.
"""

from __future__ import annotations

MAX_DETAIL = 400


def shorten(text: str | bytes | None, limit: int = MAX_DETAIL) -> str:
    """One line of at most ``limit`` characters, for error messages built from foreign output."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class CachesyncError(Exception):
    """Base of every error cachesync raises on purpose."""

    exit_code = 1


class UsageError(CachesyncError):
    exit_code = 2


class ConfigError(CachesyncError):
    exit_code = 2


class LockTimeout(CachesyncError):
    pass


class VolumeError(CachesyncError):
    pass


class MountError(CachesyncError):
    pass


class BuildahError(CachesyncError):
    def __init__(self, args: list[str], returncode: int, stderr: str | bytes | None):
        self.argv = list(args)
        self.returncode = returncode
        self.stderr = shorten(stderr)
        tool = self.argv[0] if self.argv else "buildah"
        verb = next((a for a in self.argv[1:] if not a.startswith("-") and "/" not in a), "")
        super().__init__(f"{tool} {verb} failed (exit {returncode}): {self.stderr}".rstrip(": "))


class RegistryError(CachesyncError):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        self.status = status
        self.code = code
        super().__init__(message)


class RegistryUnavailable(RegistryError):
    """Transient: the registry could not be reached or asked us to come back later."""


class Unauthorized(RegistryError):
    pass


class NotFound(RegistryError):
    pass


class DigestMismatch(RegistryError):
    pass
