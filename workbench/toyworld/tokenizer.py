"""A CLIP tokenizer with a tiny vocabulary: every byte, plus one token per given word.

It is a real ``transformers.CLIPTokenizer`` (byte-level BPE), so it saves and loads like OpenAI's.
Words outside the vocabulary still encode, one token per character, so any prompt is accepted and an
over-long one is truncated at ``model_max_length`` exactly as with a full-size CLIP.
"""

from __future__ import annotations

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

__all__ = ["MAX_LENGTH", "build_tokenizer"]

MAX_LENGTH = 77
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def build_tokenizer(words: list[str], max_length: int = MAX_LENGTH) -> CLIPTokenizer:
    """A CLIPTokenizer whose merges assemble each of ``words`` (lower-case ASCII) into one token."""
    vocab: dict[str, int] = {token: i for i, token in enumerate(_SPECIAL)}
    for char in sorted(ByteLevel.alphabet()):
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        # Merge left to right: "c i" -> "ci", "ci r" -> "cir", ..., "circl e</w>" -> "circle</w>".
        pieces = [*word[:-1], word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            pair = (merged, piece)
            merged += piece
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(merged, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
