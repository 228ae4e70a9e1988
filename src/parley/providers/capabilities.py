"""What a model can do: call tools, take images, name a conversation, and how much context it
holds.

Known models come from a built-in table matched on the model's name (whatever provider serves it:
``qwen2.5:7b`` on Ollama is the same model as on vLLM); ``[models."provider/model"]`` in
``parley.toml`` overrides any field, by exact name or ``fnmatch`` pattern. A model in neither is
assumed to call tools, and to hold :data:`DEFAULT_CONTEXT_WINDOW` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from parley.config import ModelConfig

DEFAULT_CONTEXT_WINDOW = 8_192
DEFAULT_OUTPUT_RESERVE = 1_024


@dataclass(frozen=True)
class Capabilities:
    tools: bool = True
    vision: bool = True
    context_window: int = DEFAULT_CONTEXT_WINDOW
    output_reserve: int = DEFAULT_OUTPUT_RESERVE
    titles: bool = True  # asked for a title, answers with one (a tiny model answers the chat)
    known: bool = False


def _known(tools: bool, vision: bool, context_window: int, titles: bool = True) -> Capabilities:
    return Capabilities(
        tools=tools, vision=vision, context_window=context_window, titles=titles, known=True
    )


# Model-name patterns, first match wins.
BUILTIN: tuple[tuple[str, Capabilities], ...] = (
    ("smollm2*", _known(tools=False, vision=False, context_window=4_096, titles=False)),
    ("gpt-4o*", _known(tools=True, vision=True, context_window=128_000)),
    ("gpt-4.1*", _known(tools=True, vision=True, context_window=1_047_576)),
    ("gpt-5*", _known(tools=True, vision=True, context_window=400_000)),
    ("o[134]*", _known(tools=True, vision=True, context_window=200_000)),
    ("gpt-3.5*", _known(tools=True, vision=False, context_window=16_385)),
    ("claude-*", _known(tools=True, vision=True, context_window=200_000)),
    ("gemini-*", _known(tools=True, vision=True, context_window=1_048_576)),
    ("qwen2.5*", _known(tools=True, vision=False, context_window=32_768)),
    ("qwen3*", _known(tools=True, vision=False, context_window=32_768)),
    ("llama3.[123]*", _known(tools=True, vision=False, context_window=131_072)),
    ("mistral*", _known(tools=True, vision=False, context_window=32_768)),
)


class ModelCatalog:
    """Answers :meth:`capabilities` from the configured overrides, then the built-in table."""

    def __init__(self, overrides: dict[str, ModelConfig] | None = None) -> None:
        self.overrides = overrides or {}

    def capabilities(self, ref: str, *, images: bool = True) -> Capabilities:
        """The capabilities of ``provider/model``; ``images``: whether its provider takes any."""
        name = ref.partition("/")[2].lower()
        found = next((caps for pattern, caps in BUILTIN if fnmatchcase(name, pattern)), None)
        caps = found or Capabilities()
        override = self._override(ref)
        if override is not None:
            fields = override.model_dump(exclude_none=True)
            caps = replace(caps, known=caps.known or bool(fields), **fields)
        return replace(caps, vision=caps.vision and images)

    def _override(self, ref: str) -> ModelConfig | None:
        if ref in self.overrides:
            return self.overrides[ref]
        return next((c for p, c in self.overrides.items() if fnmatchcase(ref, p)), None)
