"""Prompt sets under data/prompts: PartiPrompts, the toy world's set and a smoke set, with a loader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workbench.errors import ConfigError

__all__ = ["PROMPT_DIR", "PROMPT_SETS", "load_prompts"]

PROMPT_DIR = Path(__file__).resolve().parent.parent / "data" / "prompts"
PROMPT_SETS = {
    "partiprompts": "partiprompts/PartiPrompts.tsv",
    "toyworld": "toyworld.csv",
    "smoke": "smoke.csv",
}


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".tsv":  # PartiPrompts: Prompt, Category, Challenge, Note
        frame = pd.read_csv(path, sep="\t").rename(columns=str.lower)
        frame.insert(0, "prompt_id", [f"parti-{i:04d}" for i in range(len(frame))])
        return frame
    return pd.read_csv(path)


def load_prompts(
    name: str,
    *,
    categories: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A prompt set (a name in PROMPT_SETS or a CSV/TSV path) as prompt_id, prompt, category, ...;
    optionally only some categories, and a seeded sample of ``n`` prompts (in the file's order)."""
    path = PROMPT_DIR / PROMPT_SETS[name] if name in PROMPT_SETS else Path(name)
    if not path.is_file():
        raise ConfigError(f"unknown prompt set {name!r}; known sets: {sorted(PROMPT_SETS)} (or a .csv/.tsv path)")
    frame = _read(path)
    if categories:
        unknown = sorted(set(categories) - set(frame["category"]))
        if unknown:
            raise ConfigError(f"unknown categories {unknown} in {name!r}; it has {sorted(set(frame['category']))}")
        frame = frame[frame["category"].isin(categories)]
    if n is not None:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n!r}")
        frame = frame.sample(n=min(n, len(frame)), random_state=seed).sort_index()
    return frame.reset_index(drop=True)
