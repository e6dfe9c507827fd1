"""configctl: centralized configuration management the GitOps way.

The public API is deliberately small; everything else is reached through modules.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
