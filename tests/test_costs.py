import json
import math

import pandas as pd
import pytest

from workbench.costs import ApiPrice, GpuPrice, Prices, load_prices, priced_gpu, self_hosting_cost
from workbench.errors import ConfigError

PRICES = Prices(
    gpus={"X1": GpuPrice(2.0)},
    apis={"dear": ApiPrice(0.04), "cheap": ApiPrice(0.001)},
    utilisation=0.5,
    minimum_hours_per_month=730,
)


def test_costs_by_hand():
    cost = self_hosting_cost(1.8, "x1", batch_size=4, prices=PRICES)
    # $2/h for 1.8 s an image, busy half the time: 2 * 1.8 / 3600 / 0.5 = $0.002 an image
    assert cost.gpu == "X1" and cost.batch_size == 4 and cost.utilisation == 0.5
    assert cost.usd_per_image == pytest.approx(0.002)
    assert cost.usd_per_1000 == pytest.approx(2.0)
    assert cost.usd_per_month_minimum == pytest.approx(1460)  # 730 h * $2
    # $0.04 an image: the API's bill passes $1460 at 36,500 images; from then on self-hosting is 20x cheaper
    assert cost.breakeven_images_per_month["dear"] == pytest.approx(36_500)
    assert cost.times_cheaper_than["dear"] == pytest.approx(20)
    # $0.001 an image is below self-hosting's $0.002: never cheaper, half the price at best
    assert cost.breakeven_images_per_month["cheap"] is None
    assert cost.times_cheaper_than["cheap"] == pytest.approx(0.5)


def test_at_the_breakeven_volume_both_bills_are_equal():
    cost = self_hosting_cost(3.0, usd_per_hour=1.5, utilisation=0.25, prices=PRICES)
    volume = cost.breakeven_images_per_month["dear"]
    hours_needed = volume * cost.seconds_per_image / 3600 / cost.utilisation
    assert max(hours_needed, 730) * 1.5 == pytest.approx(volume * 0.04)
    assert cost.gpu == "custom"


def test_an_explicit_hourly_price_overrides_the_gpus():
    cost = self_hosting_cost(1.0, "X1", usd_per_hour=3.6, utilisation=1, prices=PRICES)
    assert (cost.gpu, cost.usd_per_gpu_hour, cost.usd_per_image) == ("X1", 3.6, pytest.approx(0.001))


def test_no_minimum_hours_means_cheaper_from_the_first_image():
    prices = Prices(PRICES.gpus, PRICES.apis, utilisation=0.5, minimum_hours_per_month=0)
    assert self_hosting_cost(1.8, "X1", prices=prices).breakeven_images_per_month["dear"] == 0


def test_to_dict_is_flat_and_json_ready():
    row = self_hosting_cost(1.8, "X1", batch_size=4, prices=PRICES).to_dict()
    assert json.loads(json.dumps(row)) == row
    assert {
        "gpu": "X1",
        "usd_per_gpu_hour": 2.0,
        "utilisation": 0.5,
        "batch_size": 4,
        "seconds_per_image": 1.8,
        "minimum_hours_per_month": 730,
        "breakeven_images_per_month_cheap": None,
    }.items() <= row.items()
    assert set(row) >= {"usd_per_image", "usd_per_1000", "usd_per_month_minimum", "times_cheaper_than_dear"}
    assert not any(isinstance(value, dict) for value in row.values())


def test_the_bundled_prices_are_sourced_and_dated():
    prices = load_prices()
    assert {"cpu", "T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100", "H200"} <= set(prices.gpus)
    assert {"dalle3_standard", "dalle3_hd", "midjourney"} <= set(prices.apis)
    assert prices.apis["dalle3_standard"].usd_per_image == 0.04 and prices.apis["dalle3_hd"].usd_per_image == 0.08
    assert (prices.utilisation, prices.minimum_hours_per_month) == (0.5, 730)
    for entry in [*prices.gpus.values(), *prices.apis.values()]:
        assert entry.source.startswith("https://") and entry.as_of[:4].isdigit(), entry
    cost = self_hosting_cost(2.0, "a10g")
    assert cost.usd_per_image == pytest.approx(prices.gpus["A10G"].usd_per_hour * 2 / 3600 / 0.5)
    assert set(cost.breakeven_images_per_month) == set(prices.apis)


def test_a_users_file_replaces_and_adds_entries(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(
        "defaults: {utilisation: 0.8}\n"
        "gpus:\n  h100: 2.49\n  MyGPU: {usd_per_hour: 1.0, source: our quote, as_of: '2026-11'}\n"
        "apis:\n  inhouse: 0.01\n  dalle3_hd: {usd_per_image: 0.09}\n"
    )
    prices = load_prices(path)
    assert prices.utilisation == 0.8 and prices.minimum_hours_per_month == 730
    assert prices.gpu("H100") == ("h100", GpuPrice(2.49))
    assert "H100" not in prices.gpus and "A10G" in prices.gpus
    assert prices.gpus["MyGPU"] == GpuPrice(1.0, source="our quote", as_of="2026-11")
    assert prices.apis["inhouse"].usd_per_image == 0.01 and prices.apis["dalle3_hd"].usd_per_image == 0.09
    assert "midjourney" in prices.apis
    assert self_hosting_cost(1.0, "mygpu", prices=prices).utilisation == 0.8


def test_unknown_gpus_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown GPU type 'V100'; known: .*A10G.*H100") as error:
        self_hosting_cost(1.0, "V100")
    assert error.value.field == "gpu"
    with pytest.raises(ConfigError, match="give a GPU type"):
        self_hosting_cost(1.0, prices=PRICES)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"seconds_per_image": 0}, "seconds_per_image"),
        ({"seconds_per_image": -1.0}, "seconds_per_image"),
        ({"seconds_per_image": math.nan}, "seconds_per_image"),
        ({"utilisation": 0}, "utilisation"),
        ({"utilisation": 1.2}, "utilisation"),
        ({"usd_per_hour": -2.0}, "usd_per_hour"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_assumptions_are_refused(kwargs, field):
    with pytest.raises(ConfigError) as error:
        self_hosting_cost(**({"seconds_per_image": 1.0, "gpu": "X1", "prices": PRICES} | kwargs))
    assert error.value.field == field and repr(next(iter(kwargs.values()))) in str(error.value)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("gpus: {H100: {usd_per_hour: -1}}", "gpus.H100.usd_per_hour", "above 0, not -1"),
        ("gpus: {H100: {usd_per_hr: 2}}", "gpus.H100", "mapping with usd_per_hour"),
        ("apis: {DALL-E: 0.04}", "apis.DALL-E", "lower-case letters"),
        ("apis: {x: cheap}", "apis.x", "must be a price"),
        ("defaults: {utilisation: 2}", "defaults.utilisation", r"\(0, 1\], not 2"),
        ("defaults: {minimum_hours_per_month: -5}", "defaults.minimum_hours_per_month", "0 or more"),
        ("defaults: {usd_per_kwh: -0.1}", "defaults.usd_per_kwh", "a price in dollars per kWh, 0 or more"),
        ("defaults: {usd_per_kwh: cheap}", "defaults.usd_per_kwh", "not 'cheap'"),
        ("defaults: {hours: 5}", "defaults", "may set utilisation"),
        ("gpu: {H100: 2}", "path", "top level may hold"),
        ("gpus: [H100]", "gpus", "must map names"),
        ("gpus: {H100: 2", "path", "not valid YAML"),
    ],
)
def test_a_bad_file_names_itself_and_the_field(tmp_path, text, field, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_prices(path)
    assert error.value.field == field and str(path) in str(error.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read the price file .*nowhere\.yaml"):
        load_prices(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"), ("Tesla T4", "T4"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", None),
        ("NVIDIA GH200 480GB", None), ("NVIDIA GeForce RTX 4090", None),
    ],
)  # fmt: skip
def test_the_price_is_the_hardware_the_rows_ran_on(name, gpu):
    prices = load_prices()
    assert priced_gpu(pd.DataFrame({"device": ["cuda:1"], "device_name": [name]}), prices) == gpu
