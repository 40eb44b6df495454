"""liaotian (聊天): a self-hosted chat server for large language models over WebSocket."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("liaotian")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["__version__"]
