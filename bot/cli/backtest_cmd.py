"""`handoff backtest FILE`: try a changed definition on the stored leads first."""

from __future__ import annotations

import click

from bot.backtest import render, run_backtest
from bot.cli.base import Env, main, pass_env


@main.command()
@click.argument("file")
@pass_env
def backtest(env: Env, file: str) -> None:
    """What the definition in FILE would have done to the stored leads, against the
    active one (HANDOFF_DEFINITION), with what sales accepted and rejected as evidence."""
    candidate = env.definition_at(file)
    report = run_backtest(env.db, env.definition, candidate)
    click.echo(render(report, env.definition, candidate))
