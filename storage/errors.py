"""The errors the storage layer raises; callers never see a driver's own exception."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage failure."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or did not answer in time; retrying later may work."""


class Contention(StorageError):
    """A deadlock or a lock wait timeout: the server rolled the work back; running the whole
    transaction again normally succeeds (`Storage` does that once)."""


class DuplicateKey(StorageError):
    """A unique key (or primary key) already holds this value; nothing was written."""
