"""Importing this module registers the built-in providers, in resolution order."""

import liaotian.providers.dashscope
import liaotian.providers.local
import liaotian.providers.openai_compat

# isort: split
# Last, so that its ids never shadow a real model's.
import liaotian.providers.fake  # noqa: F401
