"""MkDocs hook: the reference pages' tables, generated from the code so they cannot drift.

A page asks for a table with a marker on a line of its own; `on_page_markdown` replaces it:

- `<!-- generated: config-keys -->`: every Pulumi config key (`finetune_phi.core.settings`);
- `<!-- generated: deprecated-keys -->`: the old key spellings still accepted;
- `<!-- generated: stack-outputs -->`: the stack outputs contract (`finetune_phi.core.contract`);
- `<!-- generated: phi-cli -->`: every `phi` command and subcommand with its options,
  walked from `finetune_phi.cli.main.build_parser()`.

An unknown marker stops the build, so a typo cannot publish an empty page.
"""

from __future__ import annotations

import argparse
import html
import re
from collections.abc import Callable, Iterator

from mkdocs.exceptions import PluginError

from finetune_phi.cli.main import build_parser
from finetune_phi.core.contract import OUTPUTS
from finetune_phi.core.settings import DEPRECATED_KEYS, NAME_OVERRIDES, SETTINGS

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
USAGE_WIDTH = 88


def inline(text: str) -> str:
    """`text` as Markdown inline text: code spans kept, everything else shown literally."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):  # outside code spans
        escaped = html.escape(parts[index], quote=False).replace("|", "&#124;")
        parts[index] = re.sub(r"([\\*_\[\]])", r"\\\1", escaped)
    return "`".join(parts)


def cell(text: str) -> str:
    return inline(" ".join(text.split()))


def table(header: tuple[str, ...], rows: Iterator[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def config_keys() -> str:
    def default(value: str | int | bool | None, key: str) -> str:
        if value is None:
            return "derived (see [Names](#names))" if key in NAME_OVERRIDES else "unset"
        if value == "":
            return '`""`'
        return f"`{str(value).lower() if isinstance(value, bool) else value}`"

    return table(
        ("key", "type", "default", "description"),
        (
            (f"`{s.key}`", s.kind.value, default(s.default, s.key), cell(s.description))
            for s in SETTINGS
        ),
    )


def deprecated_keys() -> str:
    return table(
        ("old key", "new key"),
        ((f"`{old}`", f"`{new}`") for old, new in DEPRECATED_KEYS.items()),
    )


def stack_outputs() -> str:
    return table(
        ("output", "description"),
        ((f"`{name}`", cell(text)) for name, text in OUTPUTS.items()),
    )


def subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each command under `parser`, in registration order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield name, helps.get(name, ""), child


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def option_table(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> str:
    """The actions of one argument group as a table (positionals: argument and help only)."""
    formatter = argparse.HelpFormatter(prog=parser.prog)
    shown = [
        action
        for action in actions
        if action.help != argparse.SUPPRESS
        and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]
    rows: list[tuple[str, ...]] = []
    for action in shown:
        text = formatter._expand_help(action) if action.help else ""
        if not action.option_strings:
            rows.append((f"`{action.metavar or action.dest}`", cell(text)))
            continue
        if action.nargs == 0:
            value = ""
        elif action.choices is not None:
            value = "`{" + ",".join(str(choice) for choice in action.choices) + "}`"
        else:
            value = f"`{action.metavar or action.dest.upper()}`"
        if action.required:
            text = f"required; {text}" if text else "required"
        rows.append((", ".join(f"`{name}`" for name in action.option_strings), value, cell(text)))
    if not rows:
        return ""
    header = (
        ("argument", "description") if len(rows[0]) == 2 else ("option", "value", "description")
    )
    return table(header, iter(rows))


def command_reference(parser: argparse.ArgumentParser, summary: str, depth: int) -> list[str]:
    """Markdown for `parser` and, below it, each of its subcommands (`depth` 0: `phi` itself,
    whose heading is the page's)."""
    parts = [f"{'#' * (depth + 1)} {parser.prog}", ""] if depth else []
    if summary:
        parts += [inline(summary[0].upper() + summary[1:]) + ".", ""]
    parts += ["```text", usage(parser), "```", ""]
    if parser.description:
        if depth == 0:  # the top-level description is a block of examples
            parts += ["```text", parser.description.strip(), "```", ""]
        else:
            parts += [inline(parser.description.strip()), ""]
    for group in parser._action_groups:
        rows = option_table(parser, group._group_actions)
        if rows:
            if group.title not in ("options", "positional arguments"):
                parts += [f"*{inline(group.title or '')}*", ""]
            parts += [rows, ""]
    children = list(subcommands(parser))
    if children:
        listing = ((f"`{child.prog}`", cell(text)) for _, text, child in children)
        parts += [table(("command", "what it does"), listing), ""]
    for _, help_text, child in children:
        parts += command_reference(child, help_text, depth + 1)
    return parts


def phi_cli() -> str:
    return "\n".join(command_reference(build_parser(), "", 0)).strip()


GENERATORS: dict[str, Callable[[], str]] = {
    "config-keys": config_keys,
    "deprecated-keys": deprecated_keys,
    "stack-outputs": stack_outputs,
    "phi-cli": phi_cli,
}


def on_page_markdown(markdown: str, **_: object) -> str:
    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise PluginError(f"unknown marker {match.group(0)}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)
