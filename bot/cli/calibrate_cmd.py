"""`handoff calibrate`: concrete edits to the definition, from what sales rejected."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from bot import clock
from bot.calibrate import DEFAULT_WEEKS, calibrate, render
from bot.cli.base import Env, fail, main, pass_env


def _propose(env: Env, text: str, note: str) -> None:
    """Hand an edited definition to the approval flow (bot.governance.propose)."""
    raise click.UsageError("proposals arrive with governance")


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
@pass_env
def calibrate_command(env: Env, weeks: int, propose: int | None) -> None:
    """Suggest edits to the definition (a bound moved, a value dropped, the MQL threshold
    raised, a signal's points lowered) from the rejections whose reasons point at a
    criterion, each with the rejections it would have prevented and the accepts it
    would have cost."""
    path = env.settings.handoff_definition
    definition = env.definition
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read the definition: {exc.strerror or exc}")
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
    _propose(env, chosen.text, f"calibration: {chosen.change} ({chosen.summary})")
