"""The project's own errors: each says what was wrong and how to fix it."""
from __future__ import annotations


class MTLError(Exception):
    """Base class for every error MTL Studio raises on purpose."""


class ConfigError(MTLError, ValueError):
    """A config value is wrong; ``field`` names it (dotted path, e.g. ``optim.lr``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ImageDecodeError(MTLError, ValueError):
    """An uploaded file could not be read as an image; the message names the file."""


class CheckpointError(MTLError):
    """A checkpoint is missing, corrupted or from a different config."""


class DatasetUnavailableError(MTLError):
    """A real dataset is not on disk and cannot be fetched; the message says how to get it."""


class TrainingFailed(MTLError):
    """A run cannot go on (NaN loss, a task's exception ...); the message is for a person."""


class StoreUnavailable(MTLError):
    """The run store's database could not be reached (at start, or for longer than its retry window)."""
