"""`phi cost`: what a stack bills per hour (see src/finetune_phi/cloud/cost.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finetune_phi.cli.options import Commands, command, stack_file_config
from finetune_phi.cloud import cost, prices
from finetune_phi.core import azure_facts
from finetune_phi.core.config import ConfigError
from finetune_phi.core.errors import UsageError


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
        "--prices", type=Path, help="a saved Retail Prices API page, or a JSON list of pages"
    )
    parser.add_argument("--json", action="store_true", help="print the items as JSON")
    parser.add_argument(
        "--instance-type",
        default=azure_facts.DEFAULT_SERVING_VM,
        help="deployment size (default: %(default)s)",
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
    try:
        # Names need a subscription; prices do not.
        config = stack_file_config(
            args.project_dir, args.stack, "00000000-0000-0000-0000-000000000000"
        )
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if args.prices is not None:
        saved = prices.saved_items(args.prices)

        def lookup(size: str, region: str) -> prices.Meter | None:
            return prices.vm_meter(saved, size, region)
    else:
        api = prices.PriceApi(args.price_api.rstrip("/"), prices.default_cache_dir())

        def lookup(size: str, region: str) -> prices.Meter | None:
            return prices.vm_meter(api.items(prices.vm_filter(size, region)), size, region)

    items = cost.stack_items(config, lookup, args.instance_type, args.instance_count)
    training = cost.fine_tuning_run(config, lookup, args.train_nodes, args.train_hours)
    if args.json:
        print(
            json.dumps(
                {"items": [i.as_dict() for i in items], "fine_tuning_run": training}, indent=2
            )
        )
    else:
        print(cost.render(items, training))
    return 0
