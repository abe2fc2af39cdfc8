"""How every command's `--help` reads: placeholders in capitals (QUEUE, USD, DIR), never `<str>`.

Left alone, Typer shows a required argument as `{queue}` in the usage line and `queue <path>`
in the argument list, and an option without `metavar=` as `--max-usd <str>`. `apply(app)`
builds every command with `Command` and every group with `Group`, which show:

- an argument by its metavar, `QUEUE` (`[QUEUE]` when optional, `RUN...` when it takes
  several; its upper-cased name when it has no metavar);
- an option with a fixed set of values by those values, `--output [table|json]`;
- any other option by its own `metavar=` (`--max-usd USD`), which each option must name:
  tests/test_help.py walks every command's help and refuses `<str>`-style placeholders.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

if TYPE_CHECKING:
    from typer import _click as click  # Typer's own click (types only: older Typers use click)


def _choices(param: TyperOption) -> list[str] | None:
    """The values a choice option takes, as typed on the command line; None for other options."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or not descriptor.is_choice or not descriptor.choices:
        return None
    return [str(c.value) if isinstance(c, Enum) else str(c) for c in descriptor.choices]


def tidy(params: list[click.Parameter]) -> None:
    """Give arguments and choice options without a metavar the one `--help` should show."""
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperArgument):
            param.metavar = (param.name or "").upper()
        elif isinstance(param, TyperOption) and not param.is_flag:
            choices = _choices(param)
            if choices is not None:
                param.metavar = f"[{'|'.join(choices)}]"


def _argument_name(param: TyperArgument) -> str:
    name = param.metavar or (param.name or "").upper()
    return f"{name}..." if param.nargs != 1 else name


def _usage(command: click.Command, ctx: click.Context) -> list[str]:
    """The usage line's pieces: `[OPTIONS] QUEUE`, `[OPTIONS] [QUEUE]`, `[OPTIONS] RUN...`."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = _argument_name(param)
            pieces.append(name if param.required else f"[{name}]")
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


def _format_params(command: click.Command, ctx: click.Context, out: click.HelpFormatter) -> None:
    """The Arguments and Options sections; an argument shows as `QUEUE`, not `queue <path>`."""
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        if isinstance(param, TyperArgument):
            arguments.append((_argument_name(param), record[1]))
        else:
            options.append(record)
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with out.section(title):
                out.write_dl(rows)


class Command(TyperCommand):
    """A costguard command: capitalised placeholders in its usage line and help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy(self.params)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return _usage(self, ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_params(self, ctx, formatter)


class Group(TyperGroup):
    """A costguard command group (`runs`, `budget`, ...), its own options shown like `Command`'s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy(self.params)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*_usage(self, ctx), self.subcommand_metavar]


def apply(app: typer.Typer) -> None:
    """Build every command of `app` and of its groups with `Command`, every group with `Group`.

    Call it once every command is registered (commands added later would show Typer's own
    placeholders, which tests/test_help.py refuses).
    """
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = Command
    for group in app.registered_groups:
        if isinstance(group.cls, DefaultPlaceholder) or group.cls in (None, TyperGroup):
            group.cls = Group
        if group.typer_instance is not None:
            apply(group.typer_instance)
