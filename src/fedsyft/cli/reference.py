"""The CLI reference page (docs/cli.md), generated from the typer app so it cannot drift from the code.

    .venv/bin/python -m fedsyft.cli.reference > docs/cli.md

A test renders it again and fails when docs/cli.md is stale.
"""

from __future__ import annotations

import click
import typer

from .app import app


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found = []
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


def _option_row(p: click.Parameter) -> str:
    names = ", ".join(f"`{n}`" for n in [*p.opts, *p.secondary_opts])
    kind = p.type.name.upper() if not getattr(p, "is_flag", False) else "flag"
    default = p.default if p.default not in (None, (), []) and not callable(p.default) else ""
    if hasattr(default, "value"):
        default = default.value
    if isinstance(default, (list, tuple)):
        default = " ".join(map(str, default))
    help_ = " ".join((getattr(p, "help", None) or "").split()).replace("|", "\\|")
    return f"| {names} | {kind} | {'`' + str(default) + '`' if default != '' else ''} | {help_} |"


def render() -> str:
    """The whole reference, in Markdown."""
    root = typer.main.get_command(app)
    lines = ["# CLI reference", "",
             "Generated from the command's own definitions by `python -m fedsyft.cli.reference`; "
             "`fedsyft COMMAND --help` shows the same.", ""]
    for path, command in _commands(root, "fedsyft"):
        lines += [f"## `{path}`", "", " ".join((command.help or "").split()), ""]
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            lines += ["Arguments: " + ", ".join(f"`{a.name.upper()}`" for a in arguments), ""]
        options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
        if options:
            lines += ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
            lines += [_option_row(p) for p in options]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
