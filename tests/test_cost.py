"""`phi cost`: the stack's hourly bill from Azure's public price list, picking the Linux
pay-as-you-go meter and never Spot, Low Priority, Windows, Dev/Test or reservation ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from finetune_phi.cli.main import main
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


@contextmanager
def price_api(pages: dict[str, dict[str, Any]]) -> Iterator[tuple[str, list[str]]]:
    """A local stand-in for the Retail Prices API: page 1 at /prices, then ?page=N."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            page = parse_qs(urlsplit(self.path).query).get("page", ["1"])[0]
            body = json.dumps(pages[page]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with http_server(Handler) as url:
        yield f"{url}/prices", seen


def test_the_api_is_followed_page_by_page_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pages: dict[str, dict[str, Any]] = {}
    with price_api(pages) as (url, seen):
        pages["1"] = {
            "Items": [meter(A100, 9.9, type="DevTestConsumption")],
            "NextPageLink": f"{url}?page=2",
        }
        pages["2"] = {"Items": PAGE["Items"], "NextPageLink": None}
        assert cost("--price-api", url, "--json") == 0
        first = len(seen)
        assert items_by_sku(capsys.readouterr().out)[A100]["hourly_usd"] == 3.673
        assert cost("--price-api", url, "--json") == 0
        assert items_by_sku(capsys.readouterr().out)[A100]["hourly_usd"] == 3.673
    assert any("%24filter=" in path and "armSkuName" in path for path in seen)
    assert any("page=2" in path for path in seen)
    assert len(seen) == first  # the second run read its pages from the cache


def test_a_bad_prices_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "page.json").write_text('{"value": []}')
    assert cost("--prices", str(tmp_path / "page.json")) == 2
    assert "expected a Retail Prices API page with 'Items'" in capsys.readouterr().err
