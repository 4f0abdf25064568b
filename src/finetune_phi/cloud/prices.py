"""Hourly prices from the Azure Retail Prices API (public, no credentials), or from a saved
response: the Linux pay-as-you-go meter of a VM size in a region, never a Spot, Low
Priority, Windows, Dev/Test or reservation meter. Responses are cached for a day."""

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
    return f"{api}?{urllib.parse.urlencode({'$filter': vm_filter(size, region)})}"


@dataclass
class PriceApi:
    """The public API, page by page with NextPageLink, each page cached on disk."""

    url: str = PRICE_API
    cache_dir: Path | None = None
    timeout_seconds: float = 30.0

    session: Any = None
    """A `requests.Session` to send through (default: a plain `requests.get`)."""

    def items(self, size: str, region: str) -> Iterator[dict[str, Any]]:
        link: str | None = page_url(size, region, self.url)
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
