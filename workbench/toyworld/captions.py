"""Reading a toy world prompt back into its scene attributes (shape, colour, size, position, background, style).

The parser knows every word ``scenes.caption`` writes and common synonyms ("crimson", "big", "in the
middle", "a drawing of"). An attribute the prompt does not name is left out (it is not judged), except
style: a caption with no style word is the world's plain style. A prompt that is not a toy world prompt
(no shape word, two values for one attribute, a word outside the world) gets no attributes and a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from workbench.toyworld import scenes

__all__ = ["WORDS", "ParsedPrompt", "parse_prompt"]

# Each attribute: word -> value. Multi-word phrases are matched before single words.
WORDS: dict[str, dict[str, str]] = {
    "shape": {
        **{s: s for s in scenes.SHAPES},
        **{f"{s}s": s for s in scenes.SHAPES},
        "disc": "circle",
        "disk": "circle",
        "dot": "circle",
        "round shape": "circle",
        "plus": "cross",
        "plus sign": "cross",
    },
    "colour": {
        **{c: c for c in scenes.COLOURS},
        "crimson": "red",
        "scarlet": "red",
        "amber": "orange",
        "tangerine": "orange",
        "golden": "yellow",
        "gold": "yellow",
        "lemon": "yellow",
        "emerald": "green",
        "lime": "green",
        "azure": "blue",
        "cobalt": "blue",
        "navy": "blue",
        "violet": "purple",
        "lilac": "purple",
        "lavender": "purple",
    },
    "background": {
        "white": "white",
        "black": "black",
        "dark": "black",
        "grey": "grey",
        "gray": "grey",
    },
    "size": {
        "small": "small",
        "tiny": "small",
        "little": "small",
        "large": "large",
        "big": "large",
        "huge": "large",
    },
    "position": {
        "left": "left",
        "right": "right",
        "top": "top",
        "bottom": "bottom",
        "centre": "centre",
        "center": "centre",
        "centred": "centre",
        "centered": "centre",
        "central": "centre",
        "middle": "centre",
    },
    "style": {
        "photo": "photo",
        "photograph": "photo",
        "photographic": "photo",
        "photorealistic": "photo",
        "sketch": "sketch",
        "sketched": "sketch",
        "drawing": "sketch",
        "outline": "sketch",
        "plain": "plain",
        "flat": "plain",
    },
}
# Words that carry no attribute but may appear in a toy world prompt.
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "to",
        "with",
        "and",
        "against",
        "image",
        "picture",
        "shape",
        "side",
        "background",
        "backdrop",
        "sign",
        "showing",
    ]
)
_BACKGROUND_NOUNS = frozenset({"background", "backdrop"})


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt's attributes (only those it names), or none and the ``reason`` it is not a toy world prompt."""

    attributes: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


def _tokens(prompt: str) -> list[str]:
    """Lower-case words; multi-word phrases of WORDS joined into one token."""
    words = re.findall(r"[a-z]+", prompt.lower())
    phrases = {p for table in WORDS.values() for p in table if " " in p}
    tokens, i = [], 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in phrases:
            tokens.append(pair)
            i += 2
        else:
            tokens.append(words[i])
            i += 1
    return tokens


def _is_background_word(tokens: list[str], i: int) -> bool:
    """A neutral colour word names the background when a background noun follows it or "on"/"against" leads to it."""
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    before = [t for t in tokens[max(0, i - 2) : i] if t not in {"a", "an", "the"}]
    return after in _BACKGROUND_NOUNS or (bool(before) and before[-1] in {"on", "against"})


def parse_prompt(prompt: str) -> ParsedPrompt:
    """The toy world attributes ``prompt`` names; never raises for a prompt outside the world (see ``reason``)."""
    if not isinstance(prompt, str):
        return ParsedPrompt(reason=f"not a toy-world prompt: {type(prompt).__name__}, not text")
    tokens = _tokens(prompt)
    found: dict[str, list[str]] = {}
    unknown = []
    for i, token in enumerate(tokens):
        if token in WORDS["background"]:
            if not _is_background_word(tokens, i):
                return ParsedPrompt(
                    reason=f"not a toy-world prompt: {token!r} is not a shape colour "
                    f"(colours: {', '.join(scenes.COLOURS)})"
                )
            found.setdefault("background", []).append(WORDS["background"][token])
            continue
        attribute = next((a for a, table in WORDS.items() if token in table and a != "background"), None)
        if attribute is not None:
            found.setdefault(attribute, []).append(WORDS[attribute][token])
        elif token not in _FILLER:
            unknown.append(token)
    if "shape" not in found:
        return ParsedPrompt(reason=f"not a toy-world prompt: no shape word (shapes: {', '.join(scenes.SHAPES)})")
    if unknown:
        return ParsedPrompt(reason=f"not a toy-world prompt: words outside the toy world: {', '.join(unknown)}")
    for attribute, values in found.items():
        if len(set(values)) > 1:
            return ParsedPrompt(
                reason=f"not a toy-world prompt: more than one {attribute}: {', '.join(dict.fromkeys(values))}"
            )
    attributes = {a: values[0] for a, values in found.items()}
    attributes.setdefault("style", "plain")
    return ParsedPrompt(attributes={a: attributes[a] for a in scenes.ATTRIBUTES if a in attributes})
