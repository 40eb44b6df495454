"""Importing this module registers the built-in providers, in resolution order."""

from liaotian.providers import dashscope, local, openai_compat

__all__ = ["dashscope", "local", "openai_compat"]
