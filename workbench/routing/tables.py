"""Route tables: named routes (model id, settings, examples, keywords), a fallback, a threshold and a preview
route, read from YAML (``data/routes/``) with errors that name the file, the line and the field; and the
labelled prompts that ship beside them (``data/prompts/routing_*.csv``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.config import GenerationConfig, RouteSpec
from workbench.errors import ConfigError
from workbench.resources import data_path
from workbench.routing.decision import check_threshold
from workbench.routing.keywords import check_keywords

__all__ = ["LABELLED_PROMPTS", "PARAPHRASED_PROMPTS", "ROUTE_DIR", "RouteTable"]

ROUTE_DIR = data_path("routes")
LABELLED_PROMPTS = data_path("prompts", "routing_labelled.csv")  # PartiPrompts by content type, train/test split
PARAPHRASED_PROMPTS = data_path("prompts", "routing_paraphrased.csv")  # hand-written, mostly without keywords

_TABLE_KEYS = {"description", "fallback", "preview", "threshold", "keywords", "routes"}
_ROUTE_KEYS = {"model", "config", "description", "examples", "keywords"}


@dataclass(frozen=True)
class RouteTable:
    """Named routes, the fallback route, the confidence threshold, the preview route and keyword lists."""

    routes: dict[str, RouteSpec]
    fallback: str
    threshold: float = 0.5
    preview: str | None = None
    keywords: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    source: str = "<table>"

    def __post_init__(self) -> None:
        if not self.routes:
            raise ConfigError(f"{self.source}: a route table needs at least one route", "routes")
        for role in ("fallback", "preview"):
            name = getattr(self, role)
            if (name is not None or role == "fallback") and name not in self.routes:
                raise ConfigError(
                    f"{self.source}: {role} route {name!r} is not one of the routes {list(self.routes)}", role
                )
        if self.fallback == self.preview:
            raise ConfigError(
                f"{self.source}: the fallback route cannot be the preview route {self.preview!r}", "fallback"
            )
        check_threshold(self.threshold)

    @property
    def content_routes(self) -> list[str]:
        """The routes a classifier chooses among (all but the preview route)."""
        return [name for name in self.routes if name != self.preview]

    def __getitem__(self, name: str) -> RouteSpec:
        if name not in self.routes:
            raise ConfigError(f"unknown route {name!r}; the routes are {list(self.routes)}")
        return self.routes[name]

    @classmethod
    def load(cls, table: str | Path = "toyworld") -> RouteTable:
        """A table by name (a file in data/routes: "toyworld", "default") or by path."""
        path = Path(table)
        if path.suffix not in (".yaml", ".yml") and not path.exists():
            path = ROUTE_DIR / f"{table}.yaml"
            if not path.exists():
                known = sorted(p.stem for p in ROUTE_DIR.glob("*.yaml") if p.stem != "keywords")
                raise ConfigError(f"unknown route table {table!r}; tables: {known}, or a path to a YAML file")
        if not path.is_file():
            raise ConfigError(f"route table {str(path)!r} does not exist")
        return cls.from_yaml(path.read_text(), source=str(path), base_dir=path.parent)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>", base_dir: str | Path = ROUTE_DIR) -> RouteTable:
        """Parse and check a table; an error names the file, the line and the field that is wrong."""
        try:
            data, lines = yaml.safe_load(text), _line_numbers(yaml.compose(text))
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: not valid YAML: {error}") from None

        def fail(path: tuple, message: str):
            where = ".".join(str(p) for p in path) or "(top level)"
            raise ConfigError(f"{source}, line {_line_of(lines, path)}: {where}: {message}", where)

        if not isinstance(data, dict):
            fail((), f"a route table is a mapping with keys {sorted(_TABLE_KEYS)}")
        for key in set(data) - _TABLE_KEYS:
            fail((key,), f"unknown key; allowed: {sorted(_TABLE_KEYS)}")
        if not isinstance(data.get("routes"), dict) or not data["routes"]:
            fail(("routes",), "needs a mapping of route names to routes")
        keywords = _keyword_file(data.get("keywords"), Path(base_dir), fail)
        routes = {}
        for name, route in data["routes"].items():
            at = ("routes", name)
            if not isinstance(route, dict):
                fail(at, f"a route is a mapping with keys {sorted(_ROUTE_KEYS)}")
            for key in set(route) - _ROUTE_KEYS:
                fail((*at, key), f"unknown key; allowed: {sorted(_ROUTE_KEYS)}")
            if not isinstance(route.get("model"), str) or not route["model"].strip():
                fail((*at, "model"), f"needs a model id (a string), got {route.get('model')!r}")
            examples = route.get("examples", [])
            if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
                fail((*at, "examples"), "must be a list of non-empty prompts")
            try:
                config = GenerationConfig.from_dict(route.get("config") or {})
            except ConfigError as error:
                fail((*at, "config", *([error.field] if error.field else [])), str(error))
            extra = route.get("keywords", {})
            if isinstance(extra, list):
                extra = dict.fromkeys(extra, 1.0)
            if not isinstance(extra, dict):
                fail((*at, "keywords"), "must map words to weights, or list words")
            keywords[name] = {**keywords.get(name, {}), **extra}
            routes[name] = RouteSpec(str(name), route["model"], config, route.get("description", ""), examples)
        for role in ("fallback", "preview"):
            name = data.get(role)
            if (name is not None or role == "fallback") and name not in routes:
                fail((role,), f"names no route: {name!r}; the routes are {list(routes)}")
        try:
            threshold = check_threshold(data.get("threshold", 0.5))
        except ConfigError as error:
            fail(("threshold",), str(error))
        table = cls(
            routes=routes,
            fallback=data["fallback"],
            threshold=threshold,
            preview=data.get("preview"),
            keywords={name: keywords.get(name, {}) for name in routes},
            description=data.get("description", ""),
            source=source,
        )
        for name in routes:
            try:
                check_keywords(name, table.keywords[name])
            except ConfigError as error:
                fail(("routes", name, "keywords"), str(error))
        return table


def _line_numbers(node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    """Map each key path of a composed YAML document to its (1-based) line."""
    lines = {} if lines is None else lines
    if node is None:
        return lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*path, key.value)] = key.start_mark.line + 1
            _line_numbers(value, (*path, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_numbers(item, (*path, i), lines)
    return lines


def _line_of(lines: dict[tuple, int], path: tuple) -> int:
    path = tuple(str(p) if not isinstance(p, int) else p for p in path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _keyword_file(name: Any, base_dir: Path, fail) -> dict[str, dict[str, float]]:
    """Read a keywords file: route -> {weight: [words]} into route -> {word: weight}."""
    if name is None:
        return {}
    path = base_dir / str(name)
    if not path.is_file():
        fail(("keywords",), f"keyword file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    keywords: dict[str, dict[str, float]] = {}
    for route, by_weight in data.items():
        valid = isinstance(by_weight, dict) and all(
            isinstance(weight, (int, float)) and isinstance(words, list) for weight, words in by_weight.items()
        )
        if not valid:
            fail(("keywords",), f"{path.name}: route {route!r} must map numeric weights to lists of words")
        keywords[route] = {str(word): float(weight) for weight, words in by_weight.items() for word in words}
    return keywords
