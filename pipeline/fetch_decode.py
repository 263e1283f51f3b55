"""Content-Encoding undone by the fetcher itself, with output bounded at every step.

httpx decodes each received chunk in full, so a few KB of stacked gzip inflate to a gigabyte
before any byte cap is looked at. Here every layer is a ``zlib.decompressobj`` asked for at
most ``step`` bytes per call (``unconsumed_tail`` keeps the rest of its input), and the layers
are pulled lazily: the caller stops pulling at its cap, so no more than the cap plus one
``step`` is ever decoded. Memory per layer is its window plus one input chunk.

Supported: ``gzip`` (and ``x-gzip``), ``deflate`` (zlib-wrapped, or raw as some servers send
it), ``identity``; at most ``MAX_CODING_LAYERS`` non-identity layers. ``br`` and ``zstd`` are
refused: no decoder for them is installed here, and we do not advertise them either
(``ACCEPT_ENCODING``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from pipeline.errors import UnsupportedContentError

ACCEPT_ENCODING = "gzip, deflate"
MAX_CODING_LAYERS = 2
DECODE_STEP = 64 * 1024  # the most one layer hands on per call

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def content_codings(header: str | None) -> list[str]:
    """The codings of a ``Content-Encoding`` header, in the order they were applied.

    Raises ``UnsupportedContentError`` for an unknown coding or more than
    ``MAX_CODING_LAYERS`` layers (stacking has no honest use; it is how bombs are built).
    """
    names = [n.strip().lower() for n in (header or "").split(",")]
    codings = [n for n in names if n and n != "identity"]
    if len(codings) > MAX_CODING_LAYERS:
        raise UnsupportedContentError(
            f"Content-Encoding {header!r} stacks {len(codings)} layers; "
            f"at most {MAX_CODING_LAYERS} are decoded",
            user_message="This link serves its content in an unsupported compressed form.",
        )
    unknown = [n for n in codings if n not in _CODINGS]
    if unknown:
        raise UnsupportedContentError(
            f"unsupported Content-Encoding {unknown[0]!r} (only gzip and deflate are decoded)",
            user_message="This link serves its content in an unsupported compressed form.",
        )
    return [_CODINGS[n] for n in codings]


def decoded_chunks(
    raw: Iterable[bytes], codings: list[str], step: int = DECODE_STEP
) -> Iterator[bytes]:
    """``raw`` with ``codings`` undone (last applied first), in pieces of at most ``step``."""
    chunks: Iterator[bytes] = iter(raw)
    for coding in reversed(codings):
        chunks = _inflate(chunks, coding, step)
    return chunks


def _inflate(source: Iterator[bytes], coding: str, step: int) -> Iterator[bytes]:
    wbits = _GZIP_WBITS if coding == "gzip" else _ZLIB_WBITS
    inflater = zlib.decompressobj(wbits)
    settled = False  # deflate: whether the zlib-or-raw question is answered
    for data in source:
        while data and not inflater.eof:
            try:
                out = inflater.decompress(data, step)
            except zlib.error:
                if coding != "deflate" or settled:
                    raise _corrupt(coding) from None
                # "deflate" without the zlib wrapper (old IIS and friends): start over raw
                inflater = zlib.decompressobj(_RAW_DEFLATE_WBITS)
                settled = True
                continue
            settled = True
            data = inflater.unconsumed_tail
            if out:
                yield out
            # A full ``step`` may leave output pending inside zlib with no input left: ask again.
            while len(out) == step and not data and not inflater.eof:
                out = inflater.decompress(b"", step)
                if out:
                    yield out
        if inflater.eof:
            return  # bytes after the end of the stream are ignored, as httpx does


def _corrupt(coding: str) -> UnsupportedContentError:
    return UnsupportedContentError(
        f"the body is not valid {coding} data",
        user_message="This link serves content the bot could not decompress.",
    )
