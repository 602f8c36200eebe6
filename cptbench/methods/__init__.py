"""Methods: the public interface (:mod:`.base`), the registry (:mod:`.registry`) and core methods."""

from .base import Method, MethodContext, ProgressFn
from .registry import create_method, get_method_class, list_methods

__all__ = ["Method", "MethodContext", "ProgressFn", "create_method", "get_method_class", "list_methods"]
