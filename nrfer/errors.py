"""The error types of nrfer and the one way to quote an exception in a single line.

A leaf module (it imports nothing of nrfer), so every layer can raise and catch these
without importing the config or the data readers."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot be used; the message names where and what is allowed."""


class DataFormatError(ValueError):
    """A data file that is missing or does not follow its format; names the file and row."""


class DiskFull(OSError):
    """No space left on the device a file was being written to (errno ENOSPC); the message
    names the file, its folder's free space and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first non-empty line of `e`'s message (its type name when it has none), cut to
    `limit` characters: how a library's multi-line error is quoted inside one of ours."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
