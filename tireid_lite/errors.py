"""The kit's exception types: one clear sentence each, naming the file or value and the fix."""


class TIReIDError(Exception):
    """Base class: an error the kit explains to its user (no traceback needed)."""


class DatasetError(TIReIDError, ValueError):
    """A dataset root, annotation file or image is missing or malformed."""


class ConfigError(TIReIDError, ValueError):
    """An unknown config key or a bad value."""


class NotebookParameterError(TIReIDError, ValueError):
    """A notebook was given a parameter its ``parameters`` cell does not define."""
