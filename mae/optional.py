"""Optional dependencies (the [hf] extra: transformers, safetensors): imported when used, or a message that says
how to install them. Imports nothing of mae."""

import importlib

INSTALL_HINT = "pip install 'mae-from-scratch[hf]' (or pip install transformers safetensors)"


def require(module_name):
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"{module_name} is not installed; {INSTALL_HINT}") from error
