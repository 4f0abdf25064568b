"""`phi cost`: the stack's hourly bill from Azure's public price list, picking the Linux
pay-as-you-go meter and never Spot, Low Priority, Windows, Dev/Test or reservation ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests.adapters

from finetune_phi.cli.main import main
from finetune_phi.core.errors import PhiError
from tests.support import ROOT, http_server


def meter(size: str, price: float, **changes: str) -> dict[str, Any]:
    """One item as the Retail Prices API returns it."""
    return {
        "currencyCode": "USD",
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": "eastus2",
        "location": "US East 2",
        "meterName": size.removeprefix("Standard_").replace("_", " "),
        "productName": "Virtual Machines NC Series",
        "skuName": size.removeprefix("Standard_"),
        "serviceName": "Virtual Machines",
        "armSkuName": size,
        "type": "Consumption",
        "unitOfMeasure": "1 Hour",
        **changes,
    }


A100 = "Standard_NC24ads_A100_v4"
PAGE: dict[str, Any] = {
    "Items": [
        meter(A100, 3.673),
        meter(A100, 0.7346, skuName="NC24ads A100 v4 Spot", meterName="NC24ads A100 v4 Spot"),
        meter(A100, 0.7346, skuName="NC24ads A100 v4 Low Priority"),
        meter(A100, 4.5, productName="Virtual Machines NC Series Windows"),
        meter(A100, 1.1, type="DevTestConsumption"),
        meter(A100, 20000.0, type="Reservation", unitOfMeasure="1 Year"),
        meter(A100, 2.9, armRegionName="westus"),
        meter("Standard_NC4as_T4_v3", 0.526),
        meter("Standard_E16s_v3", 1.008),
    ],
    "NextPageLink": None,
    "Count": 9,
}


def cost(*args: str) -> int:
    return main(["cost", "--stack", "dev", "--project-dir", str(ROOT), *args])


def items_by_sku(out: str) -> dict[str, dict[str, Any]]:
    return {item["sku"]: item for item in json.loads(out)["items"]}


def test_a_saved_page_prices_the_dev_stack_skipping_the_wrong_meters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "page.json").write_text(json.dumps(PAGE))
    assert (
        cost(
            "--prices",
            str(tmp_path / "page.json"),
            "--json",
            "--train-nodes",
            "2",
            "--train-hours",
            "3",
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    items = {item["sku"]: item for item in document["items"]}
    assert items[A100]["hourly_usd"] == 3.673
    assert items[A100]["quantity"] == 1
    assert items["Standard_NC4as_T4_v3"]["hourly_usd"] == 0.526
    assert items["Standard_E16s_v3"]["hourly_usd"] == 1.008  # dev's CPU cluster
    assert {items[sku]["region"] for sku in items} == {"eastus2"}
    assert items["Basic"]["hourly_usd"] is None  # the registry's tier, named
    assert any("usage-based" in item["note"] for item in document["items"])
    assert document["fine_tuning_run"]["total_usd"] == pytest.approx(3.673 * 2 * 3)


def test_a_list_of_pages_and_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = {**PAGE, "Items": PAGE["Items"][:4]}
    second = {**PAGE, "Items": PAGE["Items"][4:]}
    (tmp_path / "pages.json").write_text(json.dumps([first, second]))
    assert cost("--prices", str(tmp_path / "pages.json")) == 0
    out = capsys.readouterr().out
    assert f"| {A100} | eastus2 | 1 | $3.67 | $3.67 |" in out
    assert "At most $5.21 an hour" in out  # 3.673 + 1.008 + 0.526


def test_a_size_without_a_linux_meter_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_spot = {"Items": [meter(A100, 0.7, skuName="NC24ads A100 v4 Spot")]}
    (tmp_path / "page.json").write_text(json.dumps(only_spot))
    assert cost("--prices", str(tmp_path / "page.json"), "--json") == 0
    item = items_by_sku(capsys.readouterr().out)[A100]
    assert item["hourly_usd"] is None
    assert "no Linux pay-as-you-go price found" in item["note"]


def test_the_api_is_followed_page_by_page_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pages = [
        {"Items": [meter(A100, 9.9, type="DevTestConsumption")], "NextPageLink": None},
        {"Items": PAGE["Items"], "NextPageLink": None},
    ]
    with price_list(pages) as prices:
        assert cost("--price-api", prices.url, "--json") == 0
        first = len(prices.seen)
        assert items_by_sku(capsys.readouterr().out)[A100]["hourly_usd"] == 3.673
        assert cost("--price-api", prices.url, "--json") == 0
        assert items_by_sku(capsys.readouterr().out)[A100]["hourly_usd"] == 3.673
    assert any("%24filter=" in path and "armSkuName" in path for path in prices.seen)
    assert any(parse_qs(urlsplit(path).query).get("$skip") == ["100"] for path in prices.seen)
    assert len(prices.seen) == first  # the second run read its pages from the cache


def test_a_bad_prices_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "page.json").write_text('{"value": []}')
    assert cost("--prices", str(tmp_path / "page.json")) == 2
    assert "expected a Retail Prices API page with 'Items'" in capsys.readouterr().err


SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"


def dev_names(subscription_id: str) -> Any:
    from finetune_phi.cli.options import stack_file_config

    return stack_file_config(ROOT, "dev", subscription_id).names


def test_without_a_subscription_no_name_hashed_from_one_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ARM_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    (tmp_path / "page.json").write_text(json.dumps(PAGE))
    assert cost("--prices", str(tmp_path / "page.json")) == 0
    out = capsys.readouterr().out
    zero = dev_names("00000000-0000-0000-0000-000000000000")
    for hashed in (zero.storage_account, zero.container_registry, zero.endpoint):
        assert hashed not in out
    assert "| storage account (name needs --subscription) |" in out
    assert "| endpoint (name needs --subscription) deployment |" in out
    assert f"| GPU cluster {zero.gpu_compute} (at most) |" in out  # not hashed: shown

    real = dev_names(SUBSCRIPTION)
    assert cost("--prices", str(tmp_path / "page.json"), "--subscription", SUBSCRIPTION) == 0
    out = capsys.readouterr().out
    assert f"| storage account {real.storage_account} |" in out
    assert f"| endpoint {real.endpoint} deployment |" in out
    monkeypatch.setenv("ARM_SUBSCRIPTION_ID", SUBSCRIPTION)
    assert cost("--prices", str(tmp_path / "page.json"), "--json") == 0
    resources = [item["resource"] for item in json.loads(capsys.readouterr().out)["items"]]
    assert f"container registry {real.container_registry}" in resources


@pytest.mark.parametrize(
    ("args", "variable", "message"),
    [
        (
            ["--subscription", "not-a-guid"],
            None,
            "phi: error: --subscription 'not-a-guid': must be a subscription ID, a GUID like "
            "00000000-0000-0000-0000-000000000000",
        ),
        ([], "my-sub", "phi: error: $ARM_SUBSCRIPTION_ID 'my-sub': must be a subscription ID"),
        (
            ["--instance-type", "Standard_XYZ"],
            None,
            "phi: error: --instance-type 'Standard_XYZ': not a VM size in "
            "src/finetune_phi/core/azure_facts.py; one of Standard_NC4as_T4_v3,",
        ),
    ],
)
def test_bad_arguments_are_one_line_before_the_price_list_is_asked(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    variable: str | None,
    message: str,
) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    if variable is None:
        monkeypatch.delenv("ARM_SUBSCRIPTION_ID", raising=False)
    else:
        monkeypatch.setenv("ARM_SUBSCRIPTION_ID", variable)
    with price_list([]) as prices:
        assert cost("--price-api", prices.url, *args) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(message)
    assert prices.seen == []


def test_an_unreachable_price_list_names_the_exact_pages_to_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_phi.cloud.prices import PRICE_API, page_url, vm_filter

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    unreachable = "http://127.0.0.1:9/api/retail/prices"  # the discard port: refused
    assert cost("--price-api", unreachable) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"phi: error: cannot reach the Azure price list at {unreachable}")
    assert "pass --prices FILE" in line
    urls = line.split("pass --prices FILE: ")[1].split(" ")
    sizes = [A100, "Standard_E16s_v3", "Standard_NC4as_T4_v3"]  # GPU, CPU, deployment
    assert urls == [page_url(size, "eastus2", unreachable) for size in sizes]
    for url, size in zip(urls, sizes, strict=True):
        assert parse_qs(urlsplit(url).query) == {"$filter": [vm_filter(size, "eastus2")]}
    # by default, the pages are Azure's documented Retail Prices API
    assert page_url(A100, "eastus2") == (
        "https://prices.azure.com/api/retail/prices?%24filter=serviceName+eq+%27Virtual+Machines"
        "%27+and+armRegionName+eq+%27eastus2%27+and+armSkuName+eq+%27Standard_NC24ads_A100_v4"
        "%27+and+priceType+eq+%27Consumption%27"
    )
    assert PRICE_API == "https://prices.azure.com/api/retail/prices"


def test_a_foundry_stack_shows_the_serverless_hosting_fee_as_a_named_row_without_a_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A serverless deployment of a fine-tuned model bills by the hour even when idle
    (azure-ai-docs foundry-classic/how-to/fine-tune-serverless.md, 01/28/2026); no public
    source gives the fee, so the row names it and invents no number."""
    (tmp_path / "Pulumi.dev.yaml").write_text(
        (ROOT / "Pulumi.dev.yaml").read_text() + "  finetune-phi:foundry: true\n"
    )
    (tmp_path / "page.json").write_text(json.dumps(PAGE))
    run = ["cost", "--stack", "dev", "--project-dir", str(tmp_path), "--prices"]
    assert main([*run, str(tmp_path / "page.json"), "--json"]) == 0
    [hosting] = [
        item
        for item in json.loads(capsys.readouterr().out)["items"]
        if item["resource"].startswith("serverless deployment")
    ]
    assert hosting["hourly_usd"] is None
    assert hosting["total_hourly_usd"] is None
    assert hosting["note"].startswith("hourly hosting fee, see the model's pricing page")
    assert "even when idle" in hosting["note"]
    assert "phi deploy --serverless --delete" in hosting["note"]
    assert main([*run, str(tmp_path / "page.json")]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("| serverless deployment")]
    assert "| hosting fee, not public | hosting fee, not public |" in row
    assert "At most $5.21 an hour" in out  # nothing invented for it
    assert "a serverless deployment's hosting fee (billed even when idle)" in out


def test_a_stack_without_foundry_has_no_serverless_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "page.json").write_text(json.dumps(PAGE))
    assert cost("--prices", str(tmp_path / "page.json"), "--json") == 0
    resources = [item["resource"] for item in json.loads(capsys.readouterr().out)["items"]]
    assert not [name for name in resources if "serverless" in name]


# Paging as the API pages: its NextPageLink names port 443 ------------------------------------


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        ("https://prices.azure.com:443/api/retail/prices?$filter=x&$skip=100", True),
        ("https://prices.azure.com/api/retail/prices?$skip=200", True),
        ("https://PRICES.azure.com:443/api/retail/prices?$skip=100", True),
        ("http://prices.azure.com:443/api/retail/prices?$skip=100", False),
        ("http://prices.azure.com/api/retail/prices?$skip=100", False),
        ("https://prices.azure.com:8443/api/retail/prices?$skip=100", False),
        ("https://prices.azure.com:80/api/retail/prices?$skip=100", False),
        ("https://prices.azure.com.example.com/api/retail/prices?$skip=100", False),
        ("https://example.com/api/retail/prices?$skip=100", False),
        ("https://prices.azure.com/api/retail/prices/../../steal?$skip=100", False),
        ("https://prices.azure.com/api/retail/pricesx?$skip=100", False),
        ("https://user:pw@prices.azure.com/api/retail/prices?$skip=100", False),
        ("https://prices.azure.com:99999/api/retail/prices", False),
        ("//prices.azure.com/api/retail/prices", False),
    ],
)
def test_a_next_page_is_followed_only_on_the_price_list_itself(link: str, followed: bool) -> None:
    from finetune_phi.cloud.prices import PRICE_API, same_api

    assert same_api(link, PRICE_API) is followed


class _PricesToStandIn(requests.adapters.HTTPAdapter):
    """Sends what is addressed to the Retail Prices API (with or without `:443`) to the
    stand-in, and refuses every other address."""

    def __init__(self, stand_in: str, refused: list[str]) -> None:
        super().__init__()
        self.stand_in = stand_in
        self.refused = refused

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        url = request.url or ""
        for prefix in ("https://prices.azure.com:443/", "https://prices.azure.com/"):
            if url.startswith(prefix):
                request.url = f"{self.stand_in}/{url.removeprefix(prefix)}"
                return super().send(request, *args, **kwargs)
        self.refused.append(url)
        raise requests.ConnectionError(f"the test refused to reach {url}")


@dataclass
class PriceList:
    url: str
    """The stand-in's price list, for `--price-api URL`."""
    seen: list[str]
    """The path and query of every request, in order."""
    session: requests.Session
    """A session that reaches the stand-in at https://prices.azure.com and refuses the rest."""
    refused: list[str]


@contextmanager
def price_list(pages: list[dict[str, Any]], *, as_azure: bool = False) -> Iterator[PriceList]:
    """A stand-in answering as https://prices.azure.com/api/retail/prices, whatever the
    filter: page N+1 at `$skip=100*N`, its NextPageLink written as the API writes it. The link
    is on https://prices.azure.com:443 with `as_azure` (reached through `session`), else on the
    stand-in itself (reached with `--price-api`). A last page keeps its own NextPageLink."""
    seen: list[str] = []
    base: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            index = int(query.get("$skip", ["0"])[0]) // 100
            page = dict(pages[index])
            if index + 1 < len(pages):
                page["NextPageLink"] = (
                    f"{base[0]}{url.path}?"
                    f"$filter={query['$filter'][0].replace(' ', '%20')}&$skip={100 * (index + 1)}"
                )
            body = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    refused: list[str] = []
    with http_server(Handler) as url:
        base.append("https://prices.azure.com:443" if as_azure else url)
        session = requests.Session()
        session.mount("https://", _PricesToStandIn(url, refused))
        session.mount("http://", _PricesToStandIn(url, refused))
        yield PriceList(f"{url}/api/retail/prices", seen, session, refused)


def test_three_pages_are_followed_through_their_443_links() -> None:
    from finetune_phi.cloud.prices import PRICE_API, PriceApi, vm_meter

    pages = [
        {"Items": [meter(A100, 9.9, type="DevTestConsumption")], "NextPageLink": None},
        {"Items": [meter(A100, 0.7, skuName="NC24ads A100 v4 Spot")], "NextPageLink": None},
        {"Items": [meter(A100, 3.673)], "NextPageLink": None},
    ]
    with price_list(pages, as_azure=True) as prices:
        api = PriceApi(PRICE_API, None, session=prices.session)
        items = list(api.items(A100, "eastus2"))
    assert prices.refused == []
    assert [parse_qs(urlsplit(path).query).get("$skip") for path in prices.seen] == [
        None,
        ["100"],
        ["200"],
    ]
    assert len(items) == 3
    found = vm_meter(items, A100, "eastus2")
    assert found is not None
    assert found.hourly_usd == 3.673  # on the third page


def test_a_next_page_off_the_price_list_is_refused_before_any_request() -> None:
    from finetune_phi.cloud.prices import PRICE_API, PriceApi

    pages = [{"Items": [meter(A100, 9.9)], "NextPageLink": "https://example.com/steal?$skip=100"}]

    with price_list(pages, as_azure=True) as prices:
        # the stand-in writes no link of its own for a last page: this one stays
        api = PriceApi(PRICE_API, None, session=prices.session)
        with pytest.raises(PhiError) as caught:
            list(api.items(A100, "eastus2"))
    assert (
        "https://example.com/steal?$skip=100 leaves https://prices.azure.com/api/retail/prices"
        in str(caught.value)
    )
    assert len(prices.seen) == 1
    assert prices.refused == []


# Content Safety: usage-based, priced per 1,000 text records from the same price list ----------


def text_records(price: float, **changes: Any) -> dict[str, Any]:
    """Content Safety's S0 text meter as the Retail Prices API lists it (the names in
    azure_facts.CONTENT_SAFETY_TEXT_METER); the price is a stand-in."""
    return {
        "currencyCode": "USD",
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": "eastus2",
        "location": "US East 2",
        "meterName": "Standard Text Records",
        "productName": "Content Safety",
        "skuName": "Standard",
        "serviceName": "Foundry Tools",
        "armSkuName": "",
        "type": "Consumption",
        "unitOfMeasure": "1K",
        "tierMinimumUnits": 0.0,
        **changes,
    }


SAFETY_ITEMS = [
    text_records(0.4),
    text_records(0.9, armRegionName="westus"),  # another region
    text_records(1.5, meterName="Standard Images", unitOfMeasure="1K"),  # another meter
]


def safety_stack(tmp_path: Path, sku: str | None = None) -> Path:
    """A dev stack with `contentSafety` on (and `contentSafetySku`, when given)."""
    extra = "  finetune-phi:contentSafety: true\n"
    if sku is not None:
        extra += f"  finetune-phi:contentSafetySku: {sku}\n"
    (tmp_path / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text() + extra)
    return tmp_path


def safety_rows(project: Path, page: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Any:
    """The Content Safety items of `phi cost --json`, and the table `phi cost` prints."""
    (project / "page.json").write_text(json.dumps(page))
    run = ["cost", "--stack", "dev", "--project-dir", str(project), "--prices"]
    assert main([*run, str(project / "page.json"), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert main([*run, str(project / "page.json")]) == 0
    table = capsys.readouterr().out
    return [item for item in items if item["resource"].startswith("Content Safety")], table


def test_a_content_safety_account_is_priced_per_thousand_text_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = {"Items": [*PAGE["Items"], *SAFETY_ITEMS], "NextPageLink": None}
    [row], table = safety_rows(safety_stack(tmp_path), page, capsys)
    assert (row["sku"], row["region"], row["quantity"]) == ("S0", "eastus2", 1)
    assert row["hourly_usd"] is None  # it bills by use, never by the hour
    assert row["total_hourly_usd"] is None
    assert row["note"] == (
        "usage-based: $0.4 per 1,000 text records (Content Safety / Standard Text Records)"
    )
    [line] = [line for line in table.splitlines() if line.startswith("| Content Safety account")]
    assert "| S0 | eastus2 | 1 | usage-based | usage-based |" in line
    assert "At most $5.21 an hour" in table  # nothing hourly added for it


def test_a_stack_without_content_safety_has_no_content_safety_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "page.json").write_text(json.dumps({**PAGE, "Items": PAGE["Items"] + SAFETY_ITEMS}))
    assert cost("--prices", str(tmp_path / "page.json"), "--json") == 0
    resources = [item["resource"] for item in json.loads(capsys.readouterr().out)["items"]]
    assert not [name for name in resources if "Content Safety" in name]


def test_an_f0_content_safety_account_is_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = {"Items": [*PAGE["Items"], *SAFETY_ITEMS], "NextPageLink": None}
    [row], table = safety_rows(safety_stack(tmp_path, "F0"), page, capsys)
    assert (row["sku"], row["hourly_usd"], row["unpriced"]) == ("F0", None, "free")
    assert row["note"].startswith("free tier: no charge; at most 5 requests a second")
    assert "https://aka.ms/content-safety-pricing" in row["note"]
    assert "$0.4" not in row["note"]  # the S0 meter is not F0's price
    [line] = [line for line in table.splitlines() if line.startswith("| Content Safety account")]
    assert "| F0 | eastus2 | 1 | free | free |" in line


def test_without_the_meter_the_row_names_the_pricing_page_and_invents_no_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = [text_records(0.4, armRegionName="westus")]
    [row], _ = safety_rows(safety_stack(tmp_path), {"Items": PAGE["Items"] + elsewhere}, capsys)
    assert row["hourly_usd"] is None
    assert row["note"] == (
        "usage-based: billed per 1,000 text records; the meter Content Safety / Standard Text "
        "Records in eastus2 not found in the price list: see https://aka.ms/content-safety-pricing"
    )


def test_a_tiered_meter_shows_its_first_paid_tier() -> None:
    from finetune_phi.cloud.prices import content_safety_meter

    tiers = [
        text_records(0.0),
        text_records(0.3, tierMinimumUnits=1000.0),
        text_records(0.2, tierMinimumUnits=5000.0),
    ]
    found = content_safety_meter(reversed(tiers), "eastus2")
    assert found is not None
    assert (found.usd, found.unit, found.from_units, found.tiers) == (0.3, "1K", 1000.0, 3)
    assert content_safety_meter(tiers, "westus") is None


def test_the_api_is_asked_for_content_safety_by_product_in_the_stacks_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_phi.cloud.prices import content_safety_page_url

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = safety_stack(tmp_path)
    pages = [{"Items": [*PAGE["Items"], *SAFETY_ITEMS], "NextPageLink": None}]
    with price_list(pages) as prices:
        run = ["cost", "--stack", "dev", "--project-dir", str(project), "--price-api", prices.url]
        assert main([*run, "--json"]) == 0
    [row] = [
        item
        for item in json.loads(capsys.readouterr().out)["items"]
        if item["resource"].startswith("Content Safety")
    ]
    assert "$0.4 per 1,000 text records" in row["note"]
    asked = [parse_qs(urlsplit(path).query).get("$filter", [""])[0] for path in prices.seen]
    wanted = (
        "productName eq 'Content Safety' and armRegionName eq 'eastus2' "
        "and priceType eq 'Consumption'"
    )
    assert wanted in asked
    assert parse_qs(urlsplit(content_safety_page_url("eastus2")).query) == {"$filter": [wanted]}


@pytest.mark.parametrize(("sku", "asked"), [("S0", True), ("F0", False)])
def test_an_unreachable_price_list_names_the_content_safety_page_on_s0_only(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sku: str,
    asked: bool,
) -> None:
    from finetune_phi.cloud.prices import content_safety_page_url

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    unreachable = "http://127.0.0.1:9/api/retail/prices"
    project = safety_stack(tmp_path, sku)
    run = ["cost", "--stack", "dev", "--project-dir", str(project), "--price-api", unreachable]
    assert main(run) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"phi: error: cannot reach the Azure price list at {unreachable}")
    urls = line.split("pass --prices FILE: ")[1].split(" ")
    assert (content_safety_page_url("eastus2", unreachable) in urls) is asked
    assert len(urls) == 3 + asked  # GPU, CPU and deployment sizes, then Content Safety
