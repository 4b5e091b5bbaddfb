"""cachesync: copy-on-write build-cache volumes, synced between nodes through an OCI registry."""

__version__ = "0.1.0"
