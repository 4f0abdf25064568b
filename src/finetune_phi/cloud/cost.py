"""`phi cost`: what a stack bills per hour, from its config files and Azure's public prices:
each cluster node, the endpoint deployment at `phi deploy`'s default size and count, the
fixed and usage-based pieces, a serverless deployment's hourly hosting fee (a stack with a
Foundry project: no figure is public, the row names it), the Content Safety account (a stack
with `contentSafety` on: S0's price per 1,000 text records from the same price list, F0
free), and a fine-tuning run of the nodes and hours given.

Names that end in the stack's suffix (storage account, key vault, registry, endpoint) are
hashed from the subscription: without it (--subscription, or $ARM_SUBSCRIPTION_ID), they
are not shown. Without the network, save the price pages the error names and pass
--prices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from finetune_phi.cloud.prices import Meter, UsageMeter
from finetune_phi.core.azure_facts import (
    CONTENT_SAFETY_PRICING,
    CONTENT_SAFETY_REQUESTS_PER_SECOND,
    CONTENT_SAFETY_TEXT_METER,
    DEFAULT_CATALOG_MODEL,
    SERVERLESS_HOSTING_FEE,
)
from finetune_phi.core.config import ContentSafetyConfig, StackConfig


@dataclass(frozen=True)
class CostItem:
    resource: str
    sku: str
    region: str
    quantity: float
    hourly_usd: float | None
    """Per unit; None where the bill depends on use, or the price is not looked up."""
    note: str = ""
    unpriced: str = "usage-based"
    """What the price columns say where `hourly_usd` is None."""

    @property
    def total_hourly_usd(self) -> float | None:
        return None if self.hourly_usd is None else self.hourly_usd * self.quantity

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_hourly_usd": self.total_hourly_usd}


Lookup = Callable[[str, str], Meter | None]
UsageLookup = Callable[[str], UsageMeter | None]
"""Content Safety's text records price in a region."""


UNKNOWN_NAME = "name needs --subscription"
SERVERLESS = "serverless deployment (`phi deploy --serverless`)"


def vm_sizes(config: StackConfig, deployment_size: str) -> list[str]:
    """The VM sizes whose prices the stack's items need, each once, in the order priced."""
    sizes = [config.gpu.vm_size, *([config.cpu.vm_size] if config.cpu else []), deployment_size]
    return list(dict.fromkeys(sizes))


def stack_items(
    config: StackConfig,
    lookup: Lookup,
    deployment_size: str,
    deployment_count: int,
    *,
    names_known: bool = True,
    content_safety_lookup: UsageLookup | None = None,
) -> list[CostItem]:
    """The stack's items. Without `names_known` (the subscription is not known), a name
    hashed from it is left out rather than shown as one it will not be. Without
    `content_safety_lookup`, an S0 Content Safety account is shown unpriced."""
    region = config.location

    def named(what: str, name: str) -> str:
        return (
            f"{what} {name}"
            if names_known or config.suffix not in name
            else f"{what} ({UNKNOWN_NAME})"
        )

    def vm(resource: str, size: str, quantity: int, note: str) -> CostItem:
        meter = lookup(size, region)
        shown = note if meter is not None else f"{note}; no Linux pay-as-you-go price found"
        return CostItem(
            resource, size, region, quantity, meter.hourly_usd if meter else None, shown
        )

    items = [
        vm(
            named("GPU cluster", config.names.gpu_compute) + " (at most)",
            config.gpu.vm_size,
            config.gpu.max_nodes,
            f"bills only while nodes run; {config.gpu.min_nodes} kept at rest",
        ),
    ]
    if config.cpu is not None:
        items.append(
            vm(
                named("CPU cluster", config.names.cpu_compute) + " (at most)",
                config.cpu.vm_size,
                config.cpu.max_nodes,
                "bills only while nodes run; scales to zero",
            )
        )
    items += [
        vm(
            named("endpoint", config.names.endpoint) + " deployment",
            deployment_size,
            deployment_count,
            "bills for as long as the deployment exists",
        ),
        CostItem(
            named("container registry", config.names.container_registry),
            config.container_registry_sku,
            region,
            1,
            None,
            "fixed daily price of its tier (not looked up)",
        ),
        CostItem(
            named("storage account", config.names.storage_account),
            config.storage_sku,
            region,
            1,
            None,
            "usage-based: data stored and transactions",
        ),
        CostItem(
            named("Log Analytics", config.names.log_analytics),
            "PerGB2018",
            region,
            1,
            None,
            "usage-based: data ingested and retained",
        ),
    ]
    if config.foundry:
        items.append(
            CostItem(
                SERVERLESS,
                f"fine-tuned {DEFAULT_CATALOG_MODEL} (the default)",
                region,
                1,
                None,
                f"hourly hosting fee, see the model's pricing page: {SERVERLESS_HOSTING_FEE}; "
                "delete it with `phi deploy --serverless --delete`",
                unpriced="hosting fee, not public",
            )
        )
    if config.content_safety is not None:
        items.append(
            content_safety_item(
                config.content_safety,
                region,
                named("Content Safety account", config.content_safety.name),
                content_safety_lookup,
            )
        )
    return items


def content_safety_item(
    account: ContentSafetyConfig, region: str, resource: str, lookup: UsageLookup | None
) -> CostItem:
    """The account's row: usage-based on S0 (its price per 1,000 text records when the price
    list has the meter), free on F0. Nothing bills by the hour."""
    if account.sku == "F0":
        return CostItem(
            resource,
            account.sku,
            region,
            1,
            None,
            f"free tier: no charge; at most {CONTENT_SAFETY_REQUESTS_PER_SECOND['F0']:g} "
            "requests a second, and throttled, never billed, past its monthly limit (see "
            f"{CONTENT_SAFETY_PRICING})",
            unpriced="free",
        )
    meter = lookup(region) if lookup is not None else None
    wanted = CONTENT_SAFETY_TEXT_METER
    if meter is None:
        why = "not looked up" if lookup is None else "not found in the price list"
        note = (
            f"usage-based: billed per 1,000 text records; the meter {wanted.product} / "
            f"{wanted.meter} in {region} {why}: see {CONTENT_SAFETY_PRICING}"
        )
    else:
        per = "1,000 text records" if meter.unit == "1K" else f"{meter.unit} text records"
        note = f"usage-based: ${meter.usd:g} per {per} ({meter.product} / {meter.meter})"
        if meter.tiers > 1:
            note += f"; tiered, this price from {meter.from_units:g} x {meter.unit} on"
    return CostItem(resource, account.sku, region, 1, None, note)


def fine_tuning_run(
    config: StackConfig, lookup: Lookup, nodes: int, hours: float
) -> dict[str, Any]:
    meter = lookup(config.gpu.vm_size, config.location)
    hourly = meter.hourly_usd if meter else None
    return {
        "sku": config.gpu.vm_size,
        "nodes": nodes,
        "hours": hours,
        "hourly_usd": hourly,
        "total_usd": None if hourly is None else hourly * nodes * hours,
    }


def render(items: list[CostItem], run: dict[str, Any]) -> str:
    def usd(value: float | None, unpriced: str = "usage-based") -> str:
        return unpriced if value is None else f"${value:,.2f}"

    lines = [
        "| resource | sku | region | quantity | $/h each | $/h in all | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in items:
        lines.append(
            f"| {item.resource} | {item.sku} | {item.region} | {item.quantity:g} | "
            f"{usd(item.hourly_usd, item.unpriced)} | {usd(item.total_hourly_usd, item.unpriced)} "
            f"| {item.note} |"
        )
    priced = sum(item.total_hourly_usd or 0.0 for item in items)
    hosting = any(item.resource == SERVERLESS for item in items)
    lines.append(
        f"\nAt most ${priced:,.2f} an hour while every node and the deployment run, plus "
        "the usage-based items"
        + (" and a serverless deployment's hosting fee (billed even when idle)" if hosting else "")
        + "; clusters at rest cost nothing."
    )
    lines.append(
        f"A fine-tuning run of {run['nodes']} x {run['sku']} for {run['hours']:g} h: "
        f"{usd(run['total_usd'])}."
    )
    return "\n".join(lines)
