"""JSON as parley writes it on the wire: UTF-8 text as it is, no spaces between tokens.

Every door's frames and the model requests use :data:`compact`; it is a ``functools.partial``
of :func:`json.dumps` (a C-level call: it runs once per streamed event), so ``json.dumps``'s
other keyword arguments still apply (``compact(body, allow_nan=False)``).
"""

from __future__ import annotations

import functools
import json

compact = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
