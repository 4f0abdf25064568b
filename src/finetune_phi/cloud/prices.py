"""Prices from the Azure Retail Prices API (public, no credentials), or from a saved response:
the Linux pay-as-you-go meter of a VM size in a region, never a Spot, Low Priority, Windows,
Dev/Test or reservation meter; and Content Safety's per-1,000 text records meter
(`azure_facts.CONTENT_SAFETY_TEXT_METER`). Responses are cached for a day."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_phi.core.azure_facts import CONTENT_SAFETY_TEXT_METER, PriceMeter
from finetune_phi.core.errors import PhiError, UsageError

PRICE_API = "https://prices.azure.com/api/retail/prices"
"""Microsoft's documented Retail Prices API (learn.microsoft.com "Azure Retail Prices REST API";
its filters are case-sensitive), as recorded in DESIGN.md §3, checked 2026-11-21. Its
next-page links name the port: `"NextPageLink": https://prices.azure.com:443/api/retail/prices
?...&$skip=100` (that page's section "API response pagination", read 2026-12-05)."""
CACHE_SECONDS = 24 * 3600
MAX_PAGES = 20
EXCLUDED_SUFFIXES = (" Spot", " Low Priority")


@dataclass(frozen=True)
class Meter:
    sku: str
    region: str
    hourly_usd: float
    meter: str
    product: str


@dataclass(frozen=True)
class UsageMeter:
    """A usage-based price: `usd` for each `unit` (the API's unitOfMeasure, "1K" a thousand)."""

    region: str
    usd: float
    unit: str
    meter: str
    product: str
    from_units: float = 0.0
    """Where its tier starts (`tierMinimumUnits`): the units before it are billed by a cheaper
    or free tier."""
    tiers: int = 1
    """How many tiers the meter has in the region."""


def is_linux_pay_as_you_go(item: dict[str, Any]) -> bool:
    """A Linux, pay-as-you-go, hourly meter: what a cluster node or a deployment bills."""
    names = (str(item.get("skuName", "")), str(item.get("meterName", "")))
    return (
        item.get("type") == "Consumption"
        and item.get("unitOfMeasure") == "1 Hour"
        and "Windows" not in str(item.get("productName", ""))
        and not any(name.endswith(EXCLUDED_SUFFIXES) for name in names)
    )


def vm_meter(items: Iterable[dict[str, Any]], size: str, region: str) -> Meter | None:
    """The price of `size` in `region` among `items` (one API response's or several)."""
    candidates = [
        item
        for item in items
        if item.get("armSkuName") == size
        and item.get("armRegionName") == region
        and is_linux_pay_as_you_go(item)
    ]
    if not candidates:
        return None
    chosen = min(candidates, key=lambda item: float(item["retailPrice"]))
    return Meter(
        size,
        region,
        float(chosen["retailPrice"]),
        str(chosen.get("meterName", "")),
        str(chosen.get("productName", "")),
    )


def usage_meter(
    items: Iterable[dict[str, Any]], wanted: PriceMeter, region: str
) -> UsageMeter | None:
    """`wanted`'s pay-as-you-go price in `region` among `items`: its first tier that costs
    something (a tiered meter may start with free units), or None when no such meter is
    listed there."""
    rows = sorted(
        (
            item
            for item in items
            if item.get("armRegionName") == region
            and item.get("productName") == wanted.product
            and item.get("skuName") == wanted.sku
            and item.get("meterName") == wanted.meter
            and item.get("type") == "Consumption"
        ),
        key=lambda item: float(item.get("tierMinimumUnits") or 0.0),
    )
    if not rows:
        return None
    paid = [item for item in rows if float(item["retailPrice"]) > 0] or rows
    chosen = paid[0]
    return UsageMeter(
        region,
        float(chosen["retailPrice"]),
        str(chosen.get("unitOfMeasure", "")),
        str(chosen.get("meterName", "")),
        str(chosen.get("productName", "")),
        float(chosen.get("tierMinimumUnits") or 0.0),
        len({float(item.get("tierMinimumUnits") or 0.0) for item in rows}),
    )


def content_safety_meter(items: Iterable[dict[str, Any]], region: str) -> UsageMeter | None:
    """Content Safety's S0 text records price in `region` among `items`."""
    return usage_meter(items, CONTENT_SAFETY_TEXT_METER, region)


def saved_items(path: Path) -> list[dict[str, Any]]:
    """The items of a saved API response: one page (`{"Items": [...]}`) or a list of pages."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"--prices {path}: not a readable JSON file ({error})") from None
    pages = document if isinstance(document, list) else [document]
    if not all(isinstance(page, dict) and isinstance(page.get("Items"), list) for page in pages):
        raise UsageError(
            f"--prices {path}: expected a Retail Prices API page with 'Items', or a list of them"
        )
    return [item for page in pages for item in page["Items"]]


class PriceListError(PhiError):
    """The price list could not be read; a saved page (--prices) does without it."""


def page_url(size: str, region: str, api: str = PRICE_API) -> str:
    """The first page of `size`'s prices in `region`: what `phi cost` asks, and what to save
    for --prices (with each page its NextPageLink names)."""
    return filter_url(vm_filter(size, region), api)


def content_safety_page_url(region: str, api: str = PRICE_API) -> str:
    """The first page of Content Safety's prices in `region`, likewise."""
    return filter_url(product_filter(CONTENT_SAFETY_TEXT_METER.product, region), api)


def filter_url(odata_filter: str, api: str = PRICE_API) -> str:
    return f"{api}?{urllib.parse.urlencode({'$filter': odata_filter})}"


@dataclass
class PriceApi:
    """The public API, page by page with NextPageLink, each page cached on disk."""

    url: str = PRICE_API
    cache_dir: Path | None = None
    timeout_seconds: float = 30.0

    session: Any = None
    """A `requests.Session` to send through (default: a plain `requests.get`)."""

    def items(self, size: str, region: str) -> Iterator[dict[str, Any]]:
        """The items of `size` in `region`, page by page."""
        return self.filtered(vm_filter(size, region))

    def content_safety_items(self, region: str) -> Iterator[dict[str, Any]]:
        """The items of Content Safety's product in `region`, page by page."""
        return self.filtered(product_filter(CONTENT_SAFETY_TEXT_METER.product, region))

    def filtered(self, odata_filter: str) -> Iterator[dict[str, Any]]:
        link: str | None = filter_url(odata_filter, self.url)
        for _ in range(MAX_PAGES):
            if link is None:
                return
            page = self._page(link)
            yield from page.get("Items", [])
            link = page.get("NextPageLink") or None
            if link is not None and not same_api(link, self.url):
                raise PhiError(f"the price list's next page {link} leaves {self.url}; not followed")

    def _page(self, link: str) -> dict[str, Any]:
        cache = self._cache_path(link)
        if (
            cache is not None
            and cache.is_file()
            and time.time() - cache.stat().st_mtime < CACHE_SECONDS
        ):
            return dict(json.loads(cache.read_text()))
        import requests

        get = requests.get if self.session is None else self.session.get
        try:
            response = get(link, timeout=self.timeout_seconds, allow_redirects=False)
        except requests.RequestException as error:
            raise PriceListError(
                f"cannot reach the Azure price list at {self.url} ({type(error).__name__})"
            ) from None
        if response.status_code != 200:
            raise PriceListError(
                f"the Azure price list answered HTTP {response.status_code} for {link}"
            )
        page = dict(response.json())
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(page))
        return page

    def _cache_path(self, link: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{hashlib.sha256(link.encode()).hexdigest()[:32]}.json"


_DEFAULT_PORTS = {"https": 443, "http": 80}


def same_api(link: str, api: str) -> bool:
    """Whether a next-page `link` is on the price list at `api`: the same scheme, host and
    path, on the same port (the scheme's default, 443 for https, may be written or not), with
    no user name or password; only its query differs."""
    try:
        to, base = urllib.parse.urlsplit(link), urllib.parse.urlsplit(api)
        ports = [
            url.port or _DEFAULT_PORTS.get(url.scheme.lower())
            for url in (to, base)  # .port raises ValueError on a bad port
        ]
    except ValueError:
        return False
    return (
        to.scheme.lower() == base.scheme.lower()
        and (to.hostname or "") == (base.hostname or "")
        and to.path == base.path
        and ports[0] == ports[1]
        and to.username is None
        and to.password is None
    )


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "finetune-phi" / "prices"


def vm_filter(size: str, region: str) -> str:
    """The API's filter for one VM size in one region (names are case-sensitive)."""
    return (
        f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' "
        f"and armSkuName eq '{size}' and priceType eq 'Consumption'"
    )


def product_filter(product: str, region: str) -> str:
    """The API's filter for one product's pay-as-you-go meters in one region. The product
    name alone, without `serviceName`: Azure renamed that ("Cognitive Services", now "Foundry
    Tools"), and a filter on the old name answers nothing."""
    return (
        f"productName eq '{product}' and armRegionName eq '{region}' and priceType eq 'Consumption'"
    )
