"""What an image costs on a rented GPU, and from which monthly volume that beats an image API.

The prices (``data/costs.yaml``: GPU-hours by GPU type, API prices per image, each with its source and date, and
the default utilisation and minimum rented hours) are approximate list prices; ``load_prices(path)`` lays a
file of your own over them. ``self_hosting_cost`` turns a measured time per image into dollars:

- per image: ``usd_per_hour * seconds_per_image / 3600 / utilisation``;
- per month: ``max(hours needed at that utilisation, minimum_hours_per_month) * usd_per_hour``: a serving GPU is
  rented whether busy or not (730 hours is one GPU kept on all month);
- so an API at ``a`` dollars per image costs more from ``minimum_hours_per_month * usd_per_hour / a`` images a
  month on, when self-hosting is cheaper per image at all (else never), and at full volume self-hosting is
  ``a / usd_per_image`` times cheaper (below 1: the API is cheaper).

``priced_gpu`` finds the price table's entry for the hardware a study's rows ran on (their ``device_name``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from workbench.errors import ConfigError
from workbench.resources import data_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ApiPrice", "GpuPrice", "Prices", "SelfHostingCost", "load_prices", "priced_gpu", "self_hosting_cost"]

_API_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # API names become column names


@dataclass(frozen=True)
class GpuPrice:
    """One GPU's hourly price, and where it comes from."""

    usd_per_hour: float
    instance: str = ""
    note: str = ""
    source: str = ""
    as_of: str = ""


@dataclass(frozen=True)
class ApiPrice:
    """One image API's price per image, and where it comes from."""

    usd_per_image: float
    note: str = ""
    source: str = ""
    as_of: str = ""


@dataclass(frozen=True)
class Prices:
    """GPU and API prices with the defaults for utilisation, the minimum hours rented a month and the price of
    electricity."""

    gpus: dict[str, GpuPrice]
    apis: dict[str, ApiPrice]
    utilisation: float
    minimum_hours_per_month: float
    usd_per_kwh: float = 0.0  # electricity, for the energy an image takes where the GPU reports it

    def gpu(self, name: str) -> tuple[str, GpuPrice]:
        """The GPU of that name (any case) as ``(name as listed, price)``."""
        for listed, price in self.gpus.items():
            if listed.casefold() == str(name).casefold():
                return listed, price
        raise ConfigError(f"unknown GPU type {name!r}; known: {', '.join(self.gpus)}", field="gpu")


@dataclass(frozen=True)
class SelfHostingCost:
    """The cost of self-hosted images under stated assumptions, against each API (see the module docstring).

    ``breakeven_images_per_month[api]`` is None where self-hosting is never cheaper than that API.
    """

    gpu: str
    usd_per_gpu_hour: float
    utilisation: float
    batch_size: int
    seconds_per_image: float
    minimum_hours_per_month: float
    usd_per_image: float
    usd_per_1000: float
    usd_per_month_minimum: float
    breakeven_images_per_month: dict[str, float | None]
    times_cheaper_than: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready: the scalar fields, then ``breakeven_images_per_month_<api>`` and
        ``times_cheaper_than_<api>`` for each API."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if not isinstance(getattr(self, f.name), dict)}
        flat |= {f"breakeven_images_per_month_{api}": v for api, v in self.breakeven_images_per_month.items()}
        return flat | {f"times_cheaper_than_{api}": v for api, v in self.times_cheaper_than.items()}


def load_prices(path: str | Path | None = None) -> Prices:
    """The bundled prices, with the entries and defaults of the YAML file at ``path`` (same layout; an entry may be
    just its price) replacing or adding to them."""
    gpus, apis, defaults = _parse(data_path("costs.yaml"))
    if path is not None:
        user_gpus, user_apis, user_defaults = _parse(Path(path))
        replaced = {name.casefold() for name in user_gpus}
        gpus = {name: price for name, price in gpus.items() if name.casefold() not in replaced} | user_gpus
        apis, defaults = apis | user_apis, defaults | user_defaults
    return Prices(gpus, apis, **defaults)


def self_hosting_cost(
    seconds_per_image: float,
    gpu: str | None = None,
    *,
    usd_per_hour: float | None = None,
    utilisation: float | None = None,
    batch_size: int = 1,
    prices: Prices | None = None,
) -> SelfHostingCost:
    """The cost of images that take ``seconds_per_image`` each (batch time / images, at ``batch_size``) on
    ``gpu`` (a name in the prices) or at ``usd_per_hour`` (which, with ``gpu`` too, overrides its price), busy
    ``utilisation`` of the time (default: the prices'), compared with every API in ``prices`` (default: the
    bundled ones)."""
    prices = prices or load_prices()
    seconds_per_image = _positive(seconds_per_image, "seconds_per_image", "a number of seconds")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number of images, 1 or more, not {batch_size!r}", "batch_size")
    if usd_per_hour is not None:
        usd_per_hour = _positive(usd_per_hour, "usd_per_hour", "a price in dollars")
        gpu = gpu or "custom"
    elif gpu is not None:
        gpu, listed = prices.gpu(gpu)
        usd_per_hour = listed.usd_per_hour
    else:
        raise ConfigError(f"give a GPU type ({', '.join(prices.gpus)}) or usd_per_hour", field="gpu")
    utilisation = _utilisation(prices.utilisation if utilisation is None else utilisation, "utilisation")
    per_image = usd_per_hour * seconds_per_image / 3600 / utilisation
    fixed = prices.minimum_hours_per_month * usd_per_hour
    return SelfHostingCost(
        gpu=gpu,
        usd_per_gpu_hour=usd_per_hour,
        utilisation=utilisation,
        batch_size=batch_size,
        seconds_per_image=seconds_per_image,
        minimum_hours_per_month=prices.minimum_hours_per_month,
        usd_per_image=per_image,
        usd_per_1000=per_image * 1000,
        usd_per_month_minimum=fixed,
        breakeven_images_per_month={
            name: fixed / api.usd_per_image if per_image < api.usd_per_image else None
            for name, api in prices.apis.items()
        },
        times_cheaper_than={name: api.usd_per_image / per_image for name, api in prices.apis.items()},
    )


def priced_gpu(rows: pd.DataFrame, prices: Prices) -> str | None:
    """The entry of ``prices`` for the hardware the rows ran on (their ``device_name``): "cpu", or the GPU whose
    name is a word of the device's ("NVIDIA H200" is "H200", not "GH200"; "A100-80GB" needs "80GB" in it).
    None when the rows ran on a GPU the table does not list (or on several kinds)."""
    names, devices = _values(rows, "device_name"), _values(rows, "device")
    if not any(d.startswith("cuda") for d in devices):
        return "cpu" if "cpu" in prices.gpus else None
    if len(names) != 1:
        return None
    (name,) = names

    def named(word: str) -> bool:
        return re.search(rf"\b{re.escape(word)}\b", name.replace(" ", "-"), re.IGNORECASE) is not None

    matches = [
        gpu
        for gpu in prices.gpus
        if gpu != "cpu" and named(gpu.partition("-")[0]) and (not gpu.partition("-")[2] or named(gpu.partition("-")[2]))
    ]
    return matches[0] if len(matches) == 1 else None


def _values(rows: pd.DataFrame, column: str) -> set[str]:
    return set(rows[column].dropna().astype(str)) if column in rows else set()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any, field: str, what: str) -> float:
    if not _number(value) or value <= 0:
        raise ConfigError(f"{field} must be {what} above 0, not {value!r}", field=field)
    return float(value)


def _utilisation(value: Any, field: str) -> float:
    if not _number(value) or not 0 < value <= 1:
        raise ConfigError(f"{field} must be a share of the time in (0, 1], not {value!r}", field=field)
    return float(value)


_DEFAULTS = {"utilisation": "a share of the time in (0, 1]", "minimum_hours_per_month": "a number of hours, 0 or more",
             "usd_per_kwh": "a price in dollars per kWh, 0 or more"}  # fmt: skip


def _parse(path: Path) -> tuple[dict[str, GpuPrice], dict[str, ApiPrice], dict[str, float]]:
    """A price file's GPUs, APIs and the defaults it sets, checked; errors name the file and the entry."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read the price file {path}: {error.strerror}", field="path") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"the price file {path} is not valid YAML: {error}", field="path") from error
    data = {} if data is None else data

    def fail(message: str, field: str) -> NoReturn:
        raise ConfigError(f"{path}: {message}", field=field)

    if not isinstance(data, dict) or set(data) - {"defaults", "gpus", "apis"}:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        fail(f"the top level may hold defaults, gpus and apis, not {found}", "path")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - set(_DEFAULTS):
        fail(f"defaults may set {' and '.join(_DEFAULTS)}, not {defaults!r}", "defaults")
    for key, value in defaults.items():
        if not (_number(value) and (0 < value <= 1 if key == "utilisation" else value >= 0)):
            fail(f"defaults.{key} must be {_DEFAULTS[key]}, not {value!r}", f"defaults.{key}")
    return (
        _entries(data, "gpus", GpuPrice, "usd_per_hour", fail),
        _entries(data, "apis", ApiPrice, "usd_per_image", fail),
        {key: float(value) for key, value in defaults.items()},
    )


def _entries(data: dict, section: str, kind: type, price_key: str, fail: Callable[[str, str], NoReturn]) -> dict:
    entries = data.get(section) or {}
    if not isinstance(entries, dict):
        fail(f"{section} must map names to prices, not {entries!r}", section)
    allowed = {f.name for f in fields(kind)}
    parsed = {}
    for name, entry in entries.items():
        where = f"{section}.{name}"
        if section == "apis" and not (isinstance(name, str) and _API_NAME.match(name)):
            fail(f"API name {name!r} must be lower-case letters, digits and _ (it becomes a column name)", where)
        if _number(entry):
            entry = {price_key: entry}
        if not isinstance(entry, dict) or price_key not in entry or set(entry) - allowed:
            fail(f"{where} must be a price or a mapping with {price_key} and any of {sorted(allowed)}, not {entry!r}",
                 where)  # fmt: skip
        if not _number(entry[price_key]) or entry[price_key] <= 0:
            fail(
                f"{where}.{price_key} must be a price in dollars above 0, not {entry[price_key]!r}",
                f"{where}.{price_key}",
            )
        parsed[str(name)] = kind(float(entry[price_key]), **{k: str(v) for k, v in entry.items() if k != price_key})
    return parsed
