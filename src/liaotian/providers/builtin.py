"""Importing this module registers the built-in providers, in resolution order."""

import liaotian.providers.dashscope
import liaotian.providers.local
import liaotian.providers.openai_compat  # noqa: F401
