"""The `aevpipe` command line: thin click commands over the stages, one module per
stage (`common` holds what they share)."""

from __future__ import annotations

import click

from aevpipe.cli.data import demo, synth
from aevpipe.cli.featurize import featurize, verify
from aevpipe.cli.results import export, predict, report
from aevpipe.cli.train import train


class Workflow(click.Group):
    """A group listing its commands in the workflow's order, each with the whole
    first line of its help (click would sort them and cut the lines)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not cmd.short_help and cmd.help:
            cmd.short_help = cmd.help.strip().splitlines()[0]
        super().add_command(cmd, name)


@click.group(cls=Workflow, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aevpipe")
def cli() -> None:
    """Train ANI-style neural-network potentials from cached AEV shards.

    \b
    aevpipe featurize ani_gdb_s0*.h5 --out data/aev
    aevpipe train data/aev --out data/runs/first
    aevpipe report data/runs/first
    """


for command in (featurize, verify, train, report, predict, export, synth, demo):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="aevpipe")
