"""Errors a person can act on. Every message says what was wrong and what to do."""


class SigscopeError(Exception):
    """Base class: a problem with the user's input or configuration, not a bug."""


class ConfigError(SigscopeError):
    """A run configuration, model name or hyperparameter is invalid."""


class DataError(SigscopeError):
    """A data source could not be read or does not fit the requested pipeline."""
