"""`handoff definition`: check, show, propose, log, diff and activate the shared definition."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli.base import Env, fail, main, pass_env
from bot.definition import Definition, DefinitionError
from bot.explain import describe_definition


@main.group()
def definition() -> None:
    """Check, explain or change the shared definition."""


@definition.command("check")
@click.argument("file", required=False)
@pass_env
def check(env: Env, file: str | None) -> None:
    """Validate FILE (default: HANDOFF_DEFINITION), and the CRM mapping (HANDOFF_SOURCES,
    default sources.yml) when there is one; list every problem."""
    path = file or env.settings.handoff_definition
    defn = env.definition_at(path)
    click.echo(
        f"{path}: OK (version {defn.version}, {len(defn.fit)} fit criteria, "
        f"{len(defn.intent.signals)} intent signals, {len(defn.reasons)} rejection reasons)"
    )
    env.definition = defn  # the mapping's signals are checked against this file's
    sources = env.sources
    if sources is not None:
        crms = [crm for crm in (sources.hubspot, sources.salesforce) if crm is not None]
        described = ", ".join(
            f"{crm.crm}: {crm.object}, {len(crm.properties)} properties, "
            + (f"polled every {crm.poll_every:g}s" if crm.poll_every else "push only")
            for crm in crms
        )
        click.echo(f"{sources.source}: OK ({described})")


@definition.command("show")
@pass_env
def show(env: Env) -> None:
    """Print the active definition in plain words (and whether the file differs)."""
    from bot.versions import differs_warning

    active = env.definition
    click.echo(f"Active version {active.version} (from the database)")
    if env.file_definition.fingerprint != active.fingerprint:
        click.echo(f"Note: {differs_warning(env.file_definition, active.version)}")
    click.echo("")
    click.echo(describe_definition(active))


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read the definition: {exc.strerror or exc}")


BY = click.option(
    "--by",
    envvar="USER",
    default="cli",
    show_default="$USER",
    help="Who is asking (an email reaches you in Slack with the outcome).",
)


@definition.command("propose")
@click.argument("file", required=False)
@click.option("--note", help="Why the change: both owners read it.")
@BY
@pass_env
def propose(env: Env, file: str | None, note: str | None, by: str) -> None:
    """Propose FILE (default: HANDOFF_DEFINITION) as the next version: validated,
    backtested, and sent to both owners in Slack to approve or decline."""
    path = file or env.settings.handoff_definition
    send_proposal(env, _read(path), note=note, by=by, where=path)


def send_proposal(env: Env, text: str, *, note: str | None, by: str, where: str) -> None:
    """Propose `text` (bot.governance.propose) and print what the owners were sent; a
    refused proposal lists every problem and exits 2 (`where` names it)."""
    from bot import governance

    try:
        proposal = governance.propose(env.services, text, note=note, proposed_by=by)
    except governance.ProposalError as exc:
        fail(
            f"{where}: not proposed, nobody was asked:\n"
            + "\n".join(f"  {problem}" for problem in exc.problems)
        )
    stored = proposal.backtest or {}
    summary = stored.get("summary") or {}
    owners = env.definition.owners
    click.echo(f"Proposal #{proposal.id}: sent to {owners.marketing} and {owners.sales} in Slack.")
    for line in stored.get("changes") or ["no change to what is judged"]:
        click.echo(f"  {line}")
    click.echo(
        f"Backtest on {summary.get('leads', 0)} stored leads: "
        f"{summary.get('newly_qualified', 0)} newly qualify, "
        f"{summary.get('no_longer_qualified', 0)} drop out; "
        f"{summary.get('rejected_filtered', 0)} of {summary.get('rejected', 0)} past rejections "
        f"filtered; {summary.get('accepted_dropped', 0)} of {summary.get('accepted', 0)} past "
        "accepts lost."
    )


@definition.command("review")
@pass_env
def review(env: Env) -> None:
    """DM both owners the evidence for a review now (what was handed off, accepted and
    rejected since the last review, and the calibration's suggestions); the review
    schedule stays as it is. The DMs leave through the running app's outbox."""
    from bot.review import send_review_now

    sent = send_review_now(env.services)
    owners = env.definition.owners
    if sent is None:
        fail("nothing to review yet: no lead has arrived")
    click.echo(f"Review evidence queued for {owners.marketing} and {owners.sales} in Slack.")


@definition.command("log")
@pass_env
def log(env: Env) -> None:
    """Every version: when it became active, how, who approved it, and its note."""
    from bot.versions import log_lines

    env.active  # noqa: B018 - an empty database takes the file as version 1 first
    for line in log_lines(env.db):
        click.echo(line)


def _version(env: Env, number: int) -> Definition:
    from bot.versions import stored
    from store import governance as store

    with env.db.session() as session:
        row = store.by_number(session, number)
    if row is None:
        fail(f"no definition version {number}; see: handoff definition log")
    try:
        return stored(row)
    except DefinitionError as exc:
        fail(f"version {number} cannot be read:\n{exc}")


@definition.command("diff")
@click.argument("a", type=int, required=False)
@click.argument("b", type=int, required=False)
@pass_env
def diff(env: Env, a: int | None, b: int | None) -> None:
    """What changes, in plain words: the active version to the file; version A to the
    file; or version A to version B."""
    from bot.changes import describe

    old = _version(env, a) if a is not None else env.definition
    if b is not None:
        new, new_name = _version(env, b), f"version {b}"
    else:
        new, new_name = env.file_definition, env.settings.handoff_definition
    click.echo(f"From version {old.version} to {new_name}:")
    lines = describe(old, new)
    for line in lines or ["no change to what is judged"]:
        click.echo(f"  {line}")


@definition.command("activate")
@click.argument("file")
@click.option("--force", is_flag=True, help="Required: this skips the owners' approval.")
@click.option("--why", default="", help="Required: why it cannot wait (audited, owners told).")
@BY
@pass_env
def activate(env: Env, file: str, force: bool, why: str, by: str) -> None:
    """Emergency only: make FILE the active version now, without the owners' approval.
    Audited; both owners are told in Slack. The normal path is `definition propose`."""
    from bot import governance

    if not force:
        fail("activate skips the owners' approval: add --force (the normal path is propose)")
    text = _read(file)
    try:
        number = governance.force(env.services, text, why=why, by=by)
    except governance.ProposalError as exc:
        fail(f"{file}: not activated:\n" + "\n".join(f"  {problem}" for problem in exc.problems))
    click.echo(f"Version {number} is active now (forced); both owners are told in Slack.")
