"""`phi cost`: what a stack bills per hour (see src/finetune_phi/cloud/cost.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finetune_phi.cli.options import Commands, command, stack_file_config, subscription
from finetune_phi.cloud import cost, prices
from finetune_phi.cloud.deploy import check_instance_type
from finetune_phi.core import azure_facts
from finetune_phi.core.config import ConfigError
from finetune_phi.core.errors import PhiError, UsageError


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "cost",
        help="what a stack bills per hour, from its config and Azure's public prices",
        description=cost.__doc__,
    )
    parser.add_argument(
        "--stack", required=True, help="reads Pulumi.STACK.yaml (no Pulumi CLI needed)"
    )
    parser.add_argument(
        "--project-dir", type=Path, default=Path(), help="folder of Pulumi.yaml (default: .)"
    )
    parser.add_argument(
        "--subscription",
        help="the subscription ID, a GUID, for the names hashed from it (default: "
        "$ARM_SUBSCRIPTION_ID, then $AZURE_SUBSCRIPTION_ID; without one those names are not "
        "shown)",
    )
    parser.add_argument(
        "--prices",
        type=Path,
        help="instead of asking the price list: the JSON it answered, one page or a list of "
        "pages (for each VM size, the page at "
        f"{prices.PRICE_API}?$filter=serviceName eq 'Virtual Machines' and armRegionName eq "
        "'REGION' and armSkuName eq 'SIZE' and priceType eq 'Consumption'; with an S0 "
        "Content Safety account, the page at ...?$filter=productName eq 'Content Safety' and "
        "armRegionName eq 'REGION' and priceType eq 'Consumption'; and each NextPageLink's; "
        "without the network, the error lists these URLs)",
    )
    parser.add_argument("--json", action="store_true", help="print the items as JSON")
    parser.add_argument(
        "--instance-type",
        default=azure_facts.DEFAULT_SERVING_VM,
        help="deployment size, one of src/finetune_phi/core/azure_facts.py's "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--instance-count", type=int, default=1, help="deployment instances (default: 1)"
    )
    parser.add_argument(
        "--train-nodes",
        type=int,
        default=1,
        help="nodes of the fine-tuning run to price (default: 1)",
    )
    parser.add_argument("--train-hours", type=float, default=1.0, help="its hours (default: 1)")
    parser.add_argument("--price-api", default=prices.PRICE_API, help="default: %(default)s")
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    if args.instance_count < 1 or args.train_nodes < 1 or not 0 < args.train_hours <= 10_000:
        raise UsageError(
            "--instance-count and --train-nodes must be 1 or more, --train-hours above 0"
        )
    check_instance_type(args.instance_type)
    subscription_id = subscription(args.subscription)
    try:
        # Without a subscription the hashed names are wrong and not shown; prices need none.
        config = stack_file_config(
            args.project_dir, args.stack, subscription_id or "00000000-0000-0000-0000-000000000000"
        )
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if args.prices is not None:
        saved = prices.saved_items(args.prices)

        def lookup(size: str, region: str) -> prices.Meter | None:
            return prices.vm_meter(saved, size, region)

        def safety_lookup(region: str) -> prices.UsageMeter | None:
            return prices.content_safety_meter(saved, region)
    else:
        api = prices.PriceApi(args.price_api.rstrip("/"), prices.default_cache_dir())

        def lookup(size: str, region: str) -> prices.Meter | None:
            return prices.vm_meter(api.items(size, region), size, region)

        def safety_lookup(region: str) -> prices.UsageMeter | None:
            return prices.content_safety_meter(api.content_safety_items(region), region)

    try:
        items = cost.stack_items(
            config,
            lookup,
            args.instance_type,
            args.instance_count,
            names_known=bool(subscription_id),
            content_safety_lookup=safety_lookup,
        )
        training = cost.fine_tuning_run(config, lookup, args.train_nodes, args.train_hours)
    except prices.PriceListError as error:
        api_url = args.price_api.rstrip("/")
        urls = [
            prices.page_url(size, config.location, api_url)
            for size in cost.vm_sizes(config, args.instance_type)
        ]
        if config.content_safety is not None and config.content_safety.sku != "F0":
            urls.append(prices.content_safety_page_url(config.location, api_url))
        pages = " ".join(urls)
        raise PhiError(
            f"{error}; save what each of these URLs answers (and the page each NextPageLink "
            f"names) as a JSON list and pass --prices FILE: {pages}"
        ) from None
    if args.json:
        print(
            json.dumps(
                {"items": [i.as_dict() for i in items], "fine_tuning_run": training}, indent=2
            )
        )
    else:
        print(cost.render(items, training))
    return 0
