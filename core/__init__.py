"""Sigscope engine: models, data, profiling, training, jobs and the run store.

Never imports streamlit: everything the dashboard does, the CLI and tests can do too.
"""
from core.errors import ConfigError, DataError, SigscopeError

__all__ = ["ConfigError", "DataError", "SigscopeError"]
