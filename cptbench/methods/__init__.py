"""Methods: the public interface (:mod:`.base`), the registry (:mod:`.registry`) and core methods."""

from cptbench.methods.base import Method, MethodContext, ProgressFn
from cptbench.methods.registry import create_method, get_method_class, list_methods

__all__ = ["Method", "MethodContext", "ProgressFn", "create_method", "get_method_class", "list_methods"]
