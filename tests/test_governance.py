"""Governance through the wire: a change to the definition proposed from the CLI, the
owners' DMs in the fake Slack, signed clicks and modal submissions to the running app,
and the switch followed by every app on the database at its next sweep."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.blocks.card import ACCEPT
from bot.blocks.governance import (
    APPROVE,
    DECLINE,
    DECLINE_NOTE_ACTION,
    DECLINE_NOTE_BLOCK,
    DECLINE_VIEW,
)
from bot.cli import main
from bot.scheduler import SLA_SWEEP_JOB, build_scheduler
from store.db import Database
from store.models import Audit, DefinitionVersion, Handoff, Lead, Outbox, Verdict
from tests.conftest import BOT_TOKEN, DATA, lead, run_together
from tests.slackreq import block_actions, view_submission

MARKETING, SALES = "U0MKTLEAD", "U0SALESLEAD"
OWNERS = {MARKETING: "mkt-lead@example.com", SALES: "sales-lead@example.com"}
PROPOSER = ("U0ALICE", "alice@example.com")
# The tests' leads have 250 employees: the stricter definition filters them out.
STRICTER = ("between: [50, 5000]", "between: [260, 5000]")


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    """Clicks are decided after their ack, on Bolt's listener thread: wait for the effect."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def rows(db: Database, model: Any) -> list[Any]:
    with db.session() as session:
        return list(session.scalars(select(model)).all())


def proposal(db: Database, proposal_id: int) -> DefinitionVersion:
    with db.session() as session:
        row = session.get(DefinitionVersion, proposal_id)
    assert row is not None
    return row


def candidate(tmp_path: Path, *replacements: tuple[str, str], name: str = "next.yml") -> Path:
    text = (DATA / "definition.yml").read_text()
    for old, new in replacements or (STRICTER,):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def owners(fake_slack):
    for user_id, email in OWNERS.items():
        fake_slack.add_user(user_id, email)
    fake_slack.add_user(*PROPOSER)


@pytest.fixture
def cli(db, fake_slack, monkeypatch):
    """`handoff ...` in this process, on the apps' database and the fake Slack."""
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", fake_slack.url)

    def run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def propose(cli, path: Path, *extra: str):
    result = cli("definition", "propose", str(path), "--by", PROPOSER[1], *extra)
    assert result.exit_code == 0, result.stderr
    return int(result.stdout.split("#", 1)[1].split(":", 1)[0])


def dms_to(fake_slack, user_id: str, method: str = "chat.postMessage") -> list[Any]:
    return [
        c for c in fake_slack.calls_to(method) if c.args.get("channel") in (user_id, "D" + user_id)
    ]


def blocks_of(call) -> str:
    blocks = call.args.get("blocks")
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return json.dumps(blocks, ensure_ascii=False)


def buttons(call) -> dict[str, str]:
    blocks = call.args.get("blocks")
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return {
        element["action_id"]: element["value"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    }


def deliver(app, db: Database) -> None:
    """Send everything queued; Slack's one-message-a-second pace per DM holds some back."""

    def done() -> bool:
        app.drain()
        return all(row.status != "pending" for row in rows(db, Outbox))

    wait_until(done, "the outbox to empty")


def click(app, user_id: str, action_id: str, value: Any) -> None:
    response = app.slack(
        block_actions(user_id=user_id, action_id=action_id, value=str(value), channel="D" + user_id)
    )
    assert response.status_code == 200


def sweep(app) -> None:
    """The scheduler's sweep job, run directly (it also follows the active version)."""
    job = build_scheduler(app.services).get_job(SLA_SWEEP_JOB)
    job.func(*job.args)


def verdict_versions(db: Database, external_id: str) -> list[int]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Verdict.definition_version)
                .join(Lead, Lead.id == Verdict.lead_id)
                .where(Lead.external_id == external_id)
                .order_by(Verdict.id)
            )
        )


@pytest.fixture
def two_apps(app_factory):
    """Two apps on one database as two processes run them, each with its own engine."""
    engines: list[Database] = []

    def start(db: Database) -> tuple[Any, Any]:
        other = Database(db.url)
        other.create_schema()
        engines.append(other)
        return app_factory(db), app_factory(other)

    yield start
    for engine in engines:
        engine.dispose()


@pytest.fixture
def accepted(app, db, fake_slack):
    """One lead (250 employees) handed off under version 3 and accepted by its rep."""
    assert app.post_leads(lead("crm-1")).json()["results"][0]["outcome"] == "handed_off"
    app.drain()
    [handoff] = rows(db, Handoff)
    assert handoff.definition_version == 3
    click(app, "U0REP1", ACCEPT, handoff.id)
    wait_until(lambda: rows(db, Handoff)[0].status == "accepted", "the accept")
    return handoff


def test_an_empty_database_takes_the_file_as_the_active_version(app, db, cli):
    [version] = rows(db, DefinitionVersion)
    assert (version.number, version.state, version.activated_how) == (3, "active", "bootstrap")
    result = cli("definition", "log")
    assert result.exit_code == 0, result.stderr
    assert "bootstrap" in result.stdout and "(active)" in result.stdout


def test_a_proposal_dms_both_owners_the_change_backtest_and_buttons(
    app, db, fake_slack, owners, accepted, cli, tmp_path
):
    result = cli(
        "definition",
        "propose",
        str(candidate(tmp_path)),
        "--note",
        "Tiny firms churn",
        "--by",
        PROPOSER[1],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Proposal #2: sent to mkt-lead@example.com and sales")
    assert "1 of 1 past accepts lost" in result.stdout
    app.drain()
    for owner in OWNERS:
        [dm] = dms_to(fake_slack, owner)
        assert buttons(dm) == {APPROVE: "2", DECLINE: "2"}  # #1 is version 3, the file
        shown = blocks_of(dm)
        assert "What changes" in shown and "Tiny firms churn" in shown
        assert "Past accepts it would have lost: *1* of 1" in shown
        assert "crm-1 (Acme)" in shown  # the accept it would have lost
    # Nothing changed yet: the app still judges with version 3.
    assert proposal(db, 2).state == "proposed"
    app.post_leads(lead("crm-2"))
    assert verdict_versions(db, "crm-2") == [3]


def test_a_slack_outage_delays_the_owners_dms_and_loses_nothing(
    app, db, fake_slack, owners, cli, tmp_path
):
    for email in OWNERS.values():  # known to the directory from an earlier lookup
        assert app.services.directory.by_email(email) is not None
    with db.transaction() as session:
        app.services.directory.save(session)
    fake_slack.set_outage(True)
    proposal_id = propose(cli, candidate(tmp_path))
    app.drain()
    assert [row.status for row in rows(db, Outbox)] == ["pending", "pending"]
    fake_slack.set_outage(False)
    deliver(app, db)
    for owner in OWNERS:
        [dm] = [c for c in dms_to(fake_slack, owner) if c.ok]
        assert buttons(dm) == {APPROVE: str(proposal_id), DECLINE: str(proposal_id)}


@pytest.mark.parametrize("who", ["U0STRANGER", "U0REP1", "U0MGR"])
def test_anyone_but_the_owners_is_refused(app, db, fake_slack, owners, cli, tmp_path, who):
    proposal_id = propose(cli, candidate(tmp_path))
    app.drain()
    click(app, who, APPROVE, proposal_id)
    [told] = fake_slack.wait_for("chat.postEphemeral")
    assert told.args["user"] == who
    assert "Only the two owners of the definition" in told.args["text"]
    click(app, who, DECLINE, proposal_id)
    fake_slack.wait_for("chat.postEphemeral", count=2)
    assert fake_slack.calls_to("views.open") == []
    row = proposal(db, proposal_id)
    assert (row.state, row.marketing_approved_by, row.sales_approved_by) == ("proposed", None, None)


def test_one_approval_changes_nothing_two_switch_every_running_app(
    two_apps, db, fake_slack, owners, cli, tmp_path
):
    first, second = two_apps(db)
    proposal_id = propose(cli, candidate(tmp_path))
    first.drain()

    click(first, MARKETING, APPROVE, proposal_id)
    wait_until(lambda: proposal(db, proposal_id).marketing_approved_by == MARKETING, "approval")
    first.drain()
    # The other owner sees the first approval: their DM is updated in place.
    [update] = dms_to(fake_slack, SALES, "chat.update")
    assert "approved it; it goes live when you do" in blocks_of(update)
    assert buttons(update) == {APPROVE: str(proposal_id), DECLINE: str(proposal_id)}
    [own] = dms_to(fake_slack, MARKETING, "chat.update")
    assert buttons(own) == {}  # the approver has nothing left to click
    for running in (first, second):
        sweep(running)
    second.post_leads(lead("before"))
    assert verdict_versions(db, "before") == [3]

    click(second, SALES, APPROVE, proposal_id)
    wait_until(lambda: proposal(db, proposal_id).state == "active", "the activation")
    assert proposal(db, proposal_id).number == 4
    # The first app never saw the click: its next sweep switches it, without a restart.
    sweep(first)
    outcome = first.post_leads(lead("after")).json()["results"][0]
    assert outcome["outcome"] == "nurture"  # 250 employees: filtered out by version 4
    assert verdict_versions(db, "after") == [4]
    sweep(second)
    second.post_leads(lead("after-2"))
    assert verdict_versions(db, "after-2") == [4]

    # Both owners and the proposer are told.
    deliver(second, db)
    for user_id in (*OWNERS, PROPOSER[0]):
        assert any(
            "now the active version 4" in c.args["text"] for c in dms_to(fake_slack, user_id)
        )


def test_double_clicks_and_concurrent_approvals_activate_once(
    two_apps, db, fake_slack, owners, cli, tmp_path
):
    first, second = two_apps(db)
    proposal_id = propose(cli, candidate(tmp_path))
    first.drain()
    run_together(
        lambda: click(first, MARKETING, APPROVE, proposal_id),
        lambda: click(second, MARKETING, APPROVE, proposal_id),
        lambda: click(first, SALES, APPROVE, proposal_id),
        lambda: click(second, SALES, APPROVE, proposal_id),
    )
    wait_until(lambda: proposal(db, proposal_id).state == "active", "the activation")
    for running in (first, second):  # every click's work has finished
        running.server.bolt_app.listener_runner.listener_executor.submit(lambda: None).result()
    actions = [a.action for a in rows(db, Audit)]
    assert actions.count("definition_activated") == 1
    assert actions.count("definition_approved") == 2
    assert [v.number for v in rows(db, DefinitionVersion)] == [3, 4]


def test_decline_asks_why_ends_the_proposal_and_tells_everyone(
    app, db, fake_slack, owners, cli, tmp_path
):
    proposal_id = propose(cli, candidate(tmp_path))
    app.drain()
    click(app, SALES, DECLINE, proposal_id)
    [opened] = fake_slack.wait_for("views.open")
    view = (
        json.loads(opened.args["view"])
        if isinstance(opened.args["view"], str)
        else opened.args["view"]
    )
    assert view["callback_id"] == DECLINE_VIEW and view["private_metadata"] == str(proposal_id)

    def submit(note: str):
        values = {
            DECLINE_NOTE_BLOCK: {DECLINE_NOTE_ACTION: {"type": "plain_text_input", "value": note}}
        }
        return app.slack(
            view_submission(
                user_id=SALES,
                callback_id=DECLINE_VIEW,
                values=values,
                private_metadata=str(proposal_id),
            )
        )

    empty = submit("   ")
    assert empty.json()["response_action"] == "errors"
    assert "Say why" in empty.json()["errors"][DECLINE_NOTE_BLOCK]
    assert proposal(db, proposal_id).state == "proposed"

    assert submit("Reps need the 50-259 band for Q1").status_code == 200
    wait_until(lambda: proposal(db, proposal_id).state == "declined", "the decline")
    row = proposal(db, proposal_id)
    assert (row.ended_by, row.end_note) == (SALES, "Reps need the 50-259 band for Q1")
    deliver(app, db)
    for user_id in (*OWNERS, PROPOSER[0]):
        notes = [c.args["text"] for c in dms_to(fake_slack, user_id)]
        assert any("was declined" in n and "Reps need the 50-259 band" in n for n in notes)
    for owner in OWNERS:
        [update] = dms_to(fake_slack, owner, "chat.update")
        assert "Declined" in blocks_of(update) and buttons(update) == {}
    click(app, MARKETING, APPROVE, proposal_id)
    [told] = fake_slack.wait_for("chat.postEphemeral")
    assert f"#{proposal_id} is declined" in told.args["text"]
    assert [v.number for v in rows(db, DefinitionVersion) if v.number] == [3]


def test_a_newer_proposal_supersedes_an_open_one(app, db, fake_slack, owners, cli, tmp_path):
    older = propose(cli, candidate(tmp_path, ("mql: 50", "mql: 55"), name="a.yml"))
    app.drain()
    click(app, MARKETING, APPROVE, older)
    wait_until(lambda: proposal(db, older).marketing_approved_by is not None, "approval")
    newer = propose(cli, candidate(tmp_path))
    deliver(app, db)
    row = proposal(db, older)
    assert (row.state, row.end_note) == ("withdrawn", f"superseded by #{newer}")
    for owner in OWNERS:
        final = dms_to(fake_slack, owner, "chat.update")[-1]
        assert f"superseded by #{newer}" in blocks_of(final) and buttons(final) == {}
    click(app, SALES, APPROVE, older)
    [told] = fake_slack.wait_for("chat.postEphemeral")
    assert f"#{older} is withdrawn (superseded by #{newer})" in told.args["text"]
    assert proposal(db, newer).state == "proposed"


def test_an_invalid_proposal_is_refused_before_anyone_is_asked(
    app, db, fake_slack, owners, cli, tmp_path
):
    bad = candidate(tmp_path, ("in: [AU, NZ]", "in: AU"), ("mql: 50", "mql: lots"))
    result = cli("definition", "propose", str(bad))
    assert result.exit_code == 2
    assert "nobody was asked" in result.stderr
    assert "fit[1].in: expected a list" in result.stderr and "thresholds.mql" in result.stderr
    assert "Traceback" not in result.stderr
    assert [v.state for v in rows(db, DefinitionVersion)] == ["active"]
    assert rows(db, Outbox) == []


def test_an_owner_not_in_slack_is_named_and_nothing_is_sent(app, db, fake_slack, cli, tmp_path):
    fake_slack.add_user(MARKETING, OWNERS[MARKETING])  # sales' owner is not in Slack
    result = cli("definition", "propose", str(candidate(tmp_path)))
    assert result.exit_code == 2
    assert "owners.sales: sales-lead@example.com is not in Slack" in result.stderr
    assert [v.state for v in rows(db, DefinitionVersion)] == ["active"]
    assert rows(db, Outbox) == []


def test_a_changed_file_at_start_changes_nothing_until_approved(
    app_factory, db, fake_slack, cli, tmp_path, caplog, definition
):
    from bot.definition import load_definition

    app_factory(db)  # version 3 from the file
    changed = load_definition(candidate(tmp_path))
    with caplog.at_level(logging.WARNING, logger="bot.versions"):
        restarted = app_factory(db, defn=changed, handoff_definition=str(changed.source))
    assert (
        "next.yml differs from the active version 3; propose it with: handoff definition propose"
        in caplog.text
    )
    assert restarted.post_leads(lead("crm-1")).json()["results"][0]["outcome"] == "handed_off"
    assert verdict_versions(db, "crm-1") == [3]
    cli_env_file = cli("definition", "show")  # the test's own file: same as version 3
    assert (
        cli_env_file.stdout.startswith("Active version 3") and "differs" not in cli_env_file.stdout
    )


def test_show_says_the_file_differs(app, db, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HANDOFF_DEFINITION", str(candidate(tmp_path)))
    result = cli("definition", "show")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Active version 3 (from the database)\nNote: next.yml differs")


def test_force_is_audited_tells_the_owners_and_switches(app, db, fake_slack, owners, cli, tmp_path):
    path = str(candidate(tmp_path))
    refused = cli("definition", "activate", path, "--why", "x")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    no_why = cli("definition", "activate", path, "--force")
    assert no_why.exit_code == 2 and "--why" in no_why.stderr
    result = cli(
        "definition",
        "activate",
        path,
        "--force",
        "--why",
        "a bad import floods reps",
        "--by",
        "ops@example.com",
    )
    assert result.exit_code == 0, result.stderr
    assert "Version 4 is active now" in result.stdout
    [forced] = [a for a in rows(db, Audit) if a.action == "definition_forced"]
    assert (forced.actor, forced.detail["why"], forced.detail["version"]) == (
        "ops@example.com",
        "a bad import floods reps",
        4,
    )
    sweep(app)
    app.post_leads(lead("crm-9"))
    assert verdict_versions(db, "crm-9") == [4]
    deliver(app, db)
    for owner in OWNERS:
        [note] = dms_to(fake_slack, owner)
        assert (
            "WITHOUT your approval" in note.args["text"]
            and "a bad import floods reps" in note.args["text"]
        )
    log = cli("definition", "log").stdout.splitlines()
    assert log[-1].split()[0] == "4" and " forced " in log[-1]
    assert "a bad import floods reps" in log[-1] and "(active)" in log[-1]


def test_log_diff_and_the_lead_name_their_versions(
    app, db, fake_slack, owners, accepted, cli, tmp_path
):
    proposal_id = propose(cli, candidate(tmp_path), "--note", "raise the floor")
    app.drain()
    click(app, MARKETING, APPROVE, proposal_id)
    wait_until(lambda: proposal(db, proposal_id).marketing_approved_by is not None, "approval")
    click(app, SALES, APPROVE, proposal_id)
    wait_until(lambda: proposal(db, proposal_id).state == "active", "the activation")

    log = cli("definition", "log").stdout.splitlines()
    assert log[1].split()[0] == "3" and "bootstrap" in log[1]
    assert log[2].split()[0] == "4" and " approved " in log[2]
    assert "mkt-lead@example.com, sales-lead@example.com" in log[2]
    assert f"#{proposal_id} by {PROPOSER[1]}; raise the floor" in log[2] and "(active)" in log[2]

    diff = cli("definition", "diff", "3", "4")
    assert diff.exit_code == 0 and diff.stdout.startswith("From version 3 to version 4:")
    assert len(diff.stdout.splitlines()) > 1
    same = cli("definition", "diff", "4")  # the test's file is version 3's content
    assert same.exit_code == 0
    unknown = cli("definition", "diff", "9")
    assert unknown.exit_code == 2 and "no definition version 9" in unknown.stderr

    app.post_leads(lead("crm-1", title="COO"))  # judged again, now under version 4
    story = cli("lead", "crm-1").stdout
    assert "(definition v3)" in story and "(definition v4)" in story
    assert "under definition v3" in story  # the handoff keeps the version it was made under


def test_concurrent_approvals_on_postgresql_activate_once(two_apps, pg, fake_slack, owners):
    from bot import governance
    from bot.decisions import Refused

    first, second = two_apps(pg)
    text = (DATA / "definition.yml").read_text().replace(*STRICTER)
    proposal_id = governance.propose(first.services, text, note=None, proposed_by=PROPOSER[1]).id
    outcomes: list[Any] = []

    def approve(app, user_id: str) -> None:
        try:
            outcomes.append(governance.approve(app.services, proposal_id, user_id).activated)
        except Refused as refusal:
            outcomes.append(refusal.quiet)

    run_together(
        *[
            lambda app=app, user=user: approve(app, user)
            for app in (first, second)
            for user in (MARKETING, SALES)
        ]
        * 2
    )
    # Two approvals land (one per owner), one of them activates; the rest were repeats.
    assert sorted(o for o in outcomes if isinstance(o, int) and not isinstance(o, bool)) == [4]
    refusals = [o for o in outcomes if isinstance(o, bool)]  # repeats: quiet, or "approved"
    assert outcomes.count(None) == 1 and len(refusals) == 6
    assert [a.action for a in rows(pg, Audit)].count("definition_activated") == 1
    for app in (first, second):
        sweep(app)
        assert app.services.definition.version == 4
    first.post_leads(lead("after"))
    assert verdict_versions(pg, "after") == [4]


def slot(trigger) -> tuple[str, str, str]:
    fields = {field.name: str(field) for field in trigger.fields}
    return fields["day_of_week"], fields["hour"], fields["minute"]


def test_a_new_digest_slot_moves_the_weekly_job_at_the_switch(
    app, db, fake_slack, owners, cli, tmp_path
):
    from bot.scheduler import DIGEST_JOB

    scheduler = build_scheduler(app.services)
    scheduler.start(paused=True)
    try:
        assert slot(scheduler.get_job(DIGEST_JOB).trigger) == ("0", "9", "0")  # Monday 09:00
        path = candidate(tmp_path, ('schedule: "mon 09:00"', 'schedule: "fri 16:30"'))
        result = cli("definition", "activate", str(path), "--force", "--why", "new team rhythm")
        assert result.exit_code == 0, result.stderr
        job = scheduler.get_job(SLA_SWEEP_JOB)
        job.func(*job.args)  # this process's sweep sees version 4
        assert slot(scheduler.get_job(DIGEST_JOB).trigger) == ("4", "16", "30")  # Friday
    finally:
        scheduler.shutdown(wait=False)
