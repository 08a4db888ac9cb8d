"""`handoff calibrate`: concrete edits to the definition, from what sales rejected."""

from __future__ import annotations

from datetime import timedelta

import click

from bot import clock
from bot.calibrate import DEFAULT_WEEKS, calibrate, render
from bot.cli.base import Env, fail, main, pass_env
from bot.cli.definition_cmd import BY, send_proposal


@main.command(name="calibrate")
@click.option(
    "--weeks",
    type=click.IntRange(min=1),
    default=DEFAULT_WEEKS,
    show_default=True,
    help="Read the decisions of the last N weeks.",
)
@click.option(
    "--propose",
    "propose",
    type=click.IntRange(min=1),
    metavar="N",
    help="Send suggestion N to both owners as a proposal.",
)
@BY
@pass_env
def calibrate_command(env: Env, weeks: int, propose: int | None, by: str) -> None:
    """Suggest edits to the definition (a bound moved, a value dropped, the MQL threshold
    raised, a signal's points lowered) from the rejections whose reasons point at a
    criterion, each with the rejections it would have prevented and the accepts it
    would have cost."""
    definition = env.definition  # the active version: what a suggestion edits
    text = env.active.text()
    end = clock.now()
    result = calibrate(env.db, definition, text, start=end - timedelta(weeks=weeks), end=end)
    click.echo(render(result, definition))
    if propose is None:
        return
    if not 1 <= propose <= len(result.suggestions):
        fail(
            f"--propose {propose}: there is no suggestion {propose} "
            f"({len(result.suggestions)} suggestion(s) above)"
        )
    chosen = result.suggestions[propose - 1]
    note = f"calibration: {chosen.change} ({chosen.summary})"
    send_proposal(env, chosen.text, note=note, by=by, where=f"suggestion {propose}")
