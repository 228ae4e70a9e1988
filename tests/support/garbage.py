"""What the garbage collector would have to find: objects kept alive only by reference cycles."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """Yields a list that, after the block, holds the objects the block left in reference
    cycles (which only a full collection frees), rather than freed as it went."""
    found: list[object] = []
    gc.collect()
    gc.disable()
    try:
        yield found
    finally:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found.extend(gc.garbage)
            gc.garbage.clear()
        finally:
            gc.set_debug(0)
            gc.enable()


def types_from(objects: list[object], *modules: str) -> set[str]:
    names = {f"{type(o).__module__}.{type(o).__qualname__}" for o in objects}
    return {name for name in names if name.startswith(modules)}
