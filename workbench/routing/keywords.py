"""Keywords, as route tables list them and the keyword classifier matches them: a text's words, the plural
forms of a phrase's last word, and the check on a route's keyword list."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from workbench.errors import ConfigError

__all__ = ["check_keywords", "phrase_words", "plural_forms"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def phrase_words(text: str) -> list[str]:
    """Lower-case words without accents; a hyphen separates words ("ukiyo-e" is "ukiyo e", "mid-century"
    is "mid century"), an apostrophe does not ("children's")."""
    folded = unicodedata.normalize("NFKD", text.lower().replace("\u2019", "'"))
    return _WORD.findall("".join(c for c in folded if not unicodedata.combining(c)))


def plural_forms(word: str) -> set[str]:
    """The word and the plurals it may take ("city": "cities"; "man": "men")."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("man"):
        forms.add(word[:-3] + "men")
    return forms


def check_keywords(route: str, keywords: Mapping[str, float] | Iterable[str]) -> list[tuple[list[str], float]]:
    """A route's keywords (phrases with their weights, or phrases of weight 1) as (words, weight) pairs; a
    phrase without a word, or a weight that is not a number > 0, fails naming the route and the phrase."""
    weighted = keywords.items() if isinstance(keywords, Mapping) else ((phrase, 1.0) for phrase in keywords)
    checked = []
    for phrase, weight in weighted:
        words = phrase_words(str(phrase))
        if not words or isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(
                f"route {route!r}: keyword {phrase!r} needs at least one word and a weight > 0, got weight {weight!r}"
            )
        checked.append((words, float(weight)))
    return checked
