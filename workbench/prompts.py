"""Prompts: the prompt sets under data/prompts, style presets and the token-budget-aware optimizer,
and templates with wildcards (through dynamicprompts).

- ``load_prompts``: PartiPrompts, the toy world's set, a smoke set, or any CSV/TSV.
- ``PromptOptimizer``: a style preset (data/styles/*.yaml: a template around ``{prompt}`` and a negative
  prompt), quality modifiers and a base negative prompt, fitted to the text encoder's window: the
  user's prompt is kept first and whole, modifiers are dropped (last first) rather than let it be cut.
- ``expand_template``: ``{red|blue} __shape__`` -> every combination, or a seeded random sample; wildcard
  files live in data/prompts/wildcards (one value per line). The variant seed is not an image seed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from workbench.errors import ConfigError
from workbench.local_pipeline import pipeline_tokenizers
from workbench.resources import data_path

__all__ = [
    "BASE_NEGATIVE",
    "PROMPT_DIR",
    "PROMPT_SETS",
    "QUALITY_MODIFIERS",
    "STYLE_DIR",
    "WILDCARD_DIR",
    "OptimizedPrompt",
    "PromptOptimizer",
    "StylePreset",
    "expand_template",
    "load_prompts",
    "load_styles",
]

PROMPT_DIR = data_path("prompts")
STYLE_DIR = data_path("styles")
WILDCARD_DIR = data_path("prompts", "wildcards")
QUALITY_MODIFIERS = ("highly detailed", "sharp focus", "high quality")
BASE_NEGATIVE = "blurry, low quality, jpeg artifacts, watermark, text"
PROMPT_SETS = {
    "partiprompts": "partiprompts/PartiPrompts.tsv",
    "geneval": "geneval/evaluation_metadata.jsonl",
    "t2i-compbench": "t2i-compbench",
    "dpg-bench": "dpg-bench/prompts.tsv",
    "toyworld": "toyworld.csv",
    "toyworld-geneval": "toyworld-geneval.jsonl",
    "smoke": "smoke.csv",
}


def _partiprompts(path: Path) -> pd.DataFrame:
    """PartiPrompts: Prompt, Category, Challenge, Note."""
    frame = pd.read_csv(path, sep="\t").rename(columns=str.lower)
    frame.insert(0, "prompt_id", [f"parti-{i:04d}" for i in range(len(frame))])
    return frame


def _geneval(path: Path, prefix: str = "geneval") -> pd.DataFrame:
    """GenEval: a JSON object a line; ``tag`` is the category, ``include`` and ``exclude`` stay JSON text (their
    lists mix types, which parquet does not store; no ``exclude`` is ``[]``)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame({
        "prompt_id": [f"{prefix}-{i:03d}" for i in range(len(records))],
        "prompt": [r["prompt"] for r in records],
        "category": [r["tag"] for r in records],
        "include": [json.dumps(r["include"]) for r in records],
        "exclude": [json.dumps(r.get("exclude", [])) for r in records],
    })  # fmt: skip


def _t2i_compbench(folder: Path) -> pd.DataFrame:
    """T2I-CompBench: a prompt a line in ``<category>_val.txt``, the category the file's name."""
    frames = []
    for path in sorted(folder.glob("*_val.txt")):
        category = path.name.removesuffix("_val.txt")
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        frames.append(pd.DataFrame({"prompt_id": [f"compbench-{category}-{i:03d}" for i in range(len(prompts))],
                                    "prompt": prompts, "category": category}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def _dpg_bench(path: Path) -> pd.DataFrame:
    """DPG-Bench: id and prompt, one category (``dense``)."""
    frame = pd.read_csv(path, sep="\t", dtype={"id": str}, keep_default_na=False)
    return pd.DataFrame({"prompt_id": "dpg-" + frame["id"], "prompt": frame["prompt"], "category": "dense"})


def _table(path: Path) -> pd.DataFrame:
    """A prompt table of one's own: CSV, or TSV (tab-separated), with a ``prompt`` column (any case: columns are
    read in lower case); a missing ``prompt_id`` is numbered (``parti-0000`` ... for a PartiPrompts TSV, as
    before, else from the file's name), a missing ``category`` is ``all``."""
    tab = path.suffix.lower() == ".tsv" or path.name.lower().endswith((".tsv.gz", ".tsv.zip"))
    frame = pd.read_csv(path, sep="\t" if tab else ",")
    parti = list(frame.columns[:2]) == ["Prompt", "Category"]
    frame = frame.rename(columns=str.lower)
    if "prompt" not in frame:
        raise ConfigError(f"{path} has no prompt column; its columns are {list(frame.columns)}", "prompt_set")
    if "prompt_id" not in frame:
        prefix = "parti" if parti else path.name.split(".")[0]
        frame.insert(0, "prompt_id", [f"{prefix}-{i:04d}" for i in range(len(frame))])
    if "category" not in frame:
        frame["category"] = "all"
    return frame


_READERS = {"partiprompts": _partiprompts, "geneval": _geneval, "t2i-compbench": _t2i_compbench,
            "dpg-bench": _dpg_bench,
            "toyworld-geneval": lambda path: _geneval(path, "toy-geneval")}  # fmt: skip


def load_prompts(
    name: str,
    *,
    categories: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A prompt set as prompt_id, prompt, category, ...: a name in PROMPT_SETS (each read by its own reader; the
    benchmark suites ship with their licence and source), or a CSV/TSV path of one's own; optionally only some
    categories, and a seeded sample of ``n`` prompts (in the file's order)."""
    path = PROMPT_DIR / PROMPT_SETS[name] if name in PROMPT_SETS else Path(name)
    tables = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".csv.zip", ".tsv.zip")
    if not path.exists() or (name not in PROMPT_SETS and not path.name.lower().endswith(tables)):
        raise ConfigError(f"unknown prompt set {name!r}; known sets: {sorted(PROMPT_SETS)} (or a .csv/.tsv path)")
    frame = _READERS[name](path) if name in _READERS else _table(path)
    if categories:
        unknown = sorted(set(categories) - set(frame["category"]))
        if unknown:
            raise ConfigError(f"unknown categories {unknown} in {name!r}; it has {sorted(set(frame['category']))}")
        frame = frame[frame["category"].isin(categories)]
    if n is not None:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n!r}")
        frame = frame.sample(n=min(n, len(frame)), random_state=seed).sort_index()
    frame = frame.reset_index(drop=True)
    frame.attrs["prompt_set"] = name  # recorded with each metric's provenance
    return frame


# --- style presets and the optimizer ----------------------------------------------------------------


@dataclass(frozen=True)
class StylePreset:
    """A style: a template with one ``{prompt}`` and the negative prompt that goes with it."""

    name: str
    template: str
    negative_prompt: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.template.count("{prompt}") != 1:
            raise ConfigError(f"style {self.name!r}: the template must contain {{prompt}} once, got {self.template!r}")

    @property
    def prefix(self) -> str:
        """What the template puts before the prompt ("a photo of ")."""
        return self.template.split("{prompt}")[0]

    @property
    def modifiers(self) -> list[str]:
        """The comma-separated phrases the template puts after the prompt, in order."""
        return [m.strip() for m in self.template.split("{prompt}")[1].split(",") if m.strip()]


def load_styles(folder: str | Path = STYLE_DIR) -> dict[str, StylePreset]:
    """Every style preset in ``folder`` (one YAML file per style, named for it)."""
    styles = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        unknown = set(data) - {"template", "negative_prompt", "description"}
        if unknown or "template" not in data:
            raise ConfigError(f"{path}: a style needs `template` and may have `negative_prompt`, `description`")
        styles[path.stem] = StylePreset(path.stem, **data)
    return styles


_WORD = re.compile(r"[a-z0-9]+")
_FILLER = {"a", "an", "the", "of", "in", "with", "and"}


def _content_words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD.findall(text.lower()) if w not in _FILLER)


def _contains(text: str, phrase: str) -> bool:
    """Whether ``text`` already has ``phrase`` (its content words, contiguous, whole words)."""
    words, wanted = _content_words(text), _content_words(phrase)
    n = len(wanted)
    return bool(n) and any(words[i : i + n] == wanted for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class OptimizedPrompt:
    """The optimizer's output; unpacks as ``prompt, negative_prompt = optimizer.optimize(...)``."""

    prompt: str
    negative_prompt: str
    subject: str  # the user's prompt, kept first and whole
    style: str | None
    added: tuple[str, ...]  # modifiers added (the style's prefix counts as one)
    skipped: tuple[str, ...]  # modifiers the prompt already had
    dropped: tuple[str, ...]  # modifiers left out to stay within the token window
    tokens: int
    limit: int
    subject_fits: bool  # False: the user's prompt alone is longer than the window (nothing was added)

    def __iter__(self) -> Iterator[str]:
        return iter((self.prompt, self.negative_prompt))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class PromptOptimizer:
    """Adds a style preset, quality modifiers and negative prompts, within the text encoder's window.

    ``tokenizers`` are the target pipeline's (pass ``pipe``: SDXL's two are both counted, the tighter
    one decides) or the toy world's by default. Priority: the user's prompt, then the style's prefix,
    then the style's modifiers, then the quality modifiers; whatever does not fit is dropped from the
    end and reported. A modifier the prompt already has is not added again.
    """

    pipe: object = None
    styles: dict[str, StylePreset] = field(default_factory=load_styles)
    quality_modifiers: Sequence[str] = QUALITY_MODIFIERS
    base_negative: str = BASE_NEGATIVE
    tokenizers: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.tokenizers:
            self.tokenizers = _tokenizers_of(self.pipe)

    @property
    def limit(self) -> int:
        return min(t.model_max_length for t in self.tokenizers)

    def count(self, text: str) -> int:
        """Tokens of ``text`` with start and end markers, by the tokenizer that needs the most."""
        return max(len(t(text, truncation=False, verbose=False).input_ids) for t in self.tokenizers)

    def optimize(self, prompt: str, style: str | None = None, *, quality: bool = True) -> OptimizedPrompt:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"prompt must be a non-empty string, got {prompt!r}")
        if style is not None and style not in self.styles:
            raise ConfigError(f"unknown style {style!r}; styles: {sorted(self.styles)}")
        subject = " ".join(prompt.split())
        preset = self.styles.get(style) if style else None
        # 1. What could be added, most important first; what the prompt already has is skipped.
        wanted = ([preset.prefix.strip()] if preset and preset.prefix.strip() else []) + (
            preset.modifiers if preset else []
        )
        wanted += list(self.quality_modifiers) if quality else []
        kept, skipped = [], []
        for modifier in wanted:
            duplicate = _contains(subject, modifier) or any(_contains(k, modifier) for k in kept)
            (skipped if duplicate else kept).append(modifier)
        has_prefix = bool(preset and preset.prefix.strip() and kept and kept[0] == preset.prefix.strip())

        def compose(modifiers: list[str], with_prefix: bool) -> str:
            head = f"{preset.prefix}{subject}" if with_prefix else subject
            return ", ".join([head, *modifiers])

        # 2. Drop from the end until it fits; the subject itself is never shortened.
        suffix = kept[1:] if has_prefix else kept
        dropped: list[str] = []
        while suffix and self.count(compose(suffix, has_prefix)) > self.limit:
            dropped.insert(0, suffix.pop())
        if has_prefix and self.count(compose(suffix, True)) > self.limit:
            dropped.insert(0, preset.prefix.strip())
            has_prefix = False
        text = compose(suffix, has_prefix)
        negative = self._negative(preset)
        return OptimizedPrompt(
            prompt=text,
            negative_prompt=negative,
            subject=subject,
            style=style,
            added=tuple(([preset.prefix.strip()] if has_prefix else []) + suffix),
            skipped=tuple(skipped),
            dropped=tuple(dropped),
            tokens=self.count(text),
            limit=self.limit,
            subject_fits=self.count(subject) <= self.limit,
        )

    def batch_optimize(self, prompts: Sequence[str], style: str | None = None, *, quality: bool = True) -> pd.DataFrame:
        """``optimize`` for each prompt, as a table (one row per prompt)."""
        return pd.DataFrame([self.optimize(p, style, quality=quality).to_dict() for p in prompts])

    def variations(self, styles: Sequence[str], *, quality: bool = True) -> dict:
        """A/B arms: "raw" (the prompt as written) and one optimized arm per style."""
        unknown = sorted(set(styles) - set(self.styles))
        if unknown:
            raise ConfigError(f"unknown style(s) {unknown}; styles: {sorted(self.styles)}")
        arms: dict = {"raw": "{prompt}"}
        for style in styles:
            arms[style] = lambda prompt, style=style: self.optimize(prompt, style, quality=quality)
        return arms

    def _negative(self, preset: StylePreset | None) -> str:
        items = [i.strip() for i in f"{preset.negative_prompt if preset else ''},{self.base_negative}".split(",")]
        unique = list(dict.fromkeys(i for i in items if i))
        while unique and self.count(", ".join(unique)) > self.limit:
            unique.pop()
        return ", ".join(unique)


def _tokenizers_of(pipe) -> list:
    if pipe is None:
        from transformers import CLIPTokenizer

        from workbench.models import TOYWORLD_DIR

        return [CLIPTokenizer.from_pretrained(TOYWORLD_DIR / "sd-small" / "tokenizer")]
    found = pipeline_tokenizers(pipe)
    if not found:
        raise ConfigError(f"{type(pipe).__name__} has no tokenizer to count prompt tokens with")
    return found


# --- templates and wildcards ------------------------------------------------------------------------

_WILDCARD = re.compile(r"__([\w/-]+)__")


def expand_template(
    template: str,
    *,
    n: int | None = None,
    seed: int = 0,
    wildcard_dir: str | Path = WILDCARD_DIR,
) -> list[str]:
    """Prompts from a dynamicprompts template: every combination (``n=None``, the default) or ``n``
    random variants drawn with the variant ``seed`` (independent of any image seed)."""
    from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
    from dynamicprompts.wildcards.wildcard_manager import WildcardManager

    manager = WildcardManager(Path(wildcard_dir))
    known = set(manager.get_collection_names())
    missing = sorted(set(_WILDCARD.findall(template)) - known)
    if missing:
        raise ConfigError(
            f"unknown wildcard(s) {missing} in {template!r}; wildcards in {wildcard_dir}: {sorted(known)}"
        )
    if n is None:
        return list(dict.fromkeys(CombinatorialPromptGenerator(manager).generate(template, max_prompts=100_000)))
    if n < 1:
        raise ConfigError(f"n must be >= 1 (or None for every combination), got {n!r}")
    return list(RandomPromptGenerator(manager, seed=seed).generate(template, num_images=n))
