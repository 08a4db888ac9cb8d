"""The Slack surface attacked and tried as a stranger would: who may see a lead or the
numbers, lead text that tries to be Slack markup, App Home block ids, retried clicks
and answers in channels the bot is not in, and why a rep got a lead, in words."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from bot import digest, reminders
from bot.access import LEAD_REFUSED, NUMBERS_REFUSED
from bot.blocks.card import ACCEPT, REASSIGN, REJECT
from bot.blocks.modals import REASSIGN_VIEW
from bot.definition import load_definition
from store.models import Handoff
from tests.conftest import DATA, SIGNING_SECRET, lead
from tests.slackreq import block_actions, sign, view_submission
from tests.test_decisions import (
    click,
    finish_acked_work,
    rows,
    status_of,
    submit_reject,
    wait_until,
)
from tests.test_home import command, open_home

SYDNEY = ZoneInfo("Australia/Sydney")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)

# The definition's owners (tests/data/definition.yml), and someone it does not name.
OWNERS = {"mkt-lead@example.com": "U0MKT", "sales-lead@example.com": "U0SALES"}


@pytest.fixture
def owners_in_slack(fake_slack) -> None:
    for email, user_id in OWNERS.items():
        fake_slack.add_user(user_id, email)


def reassign_to(app, manager: str, handoff_id: int, rep: str) -> None:
    response = app.slack(
        view_submission(
            user_id=manager,
            callback_id=REASSIGN_VIEW,
            private_metadata=str(handoff_id),
            values={"assignee": {"assignee": {"type": "users_select", "selected_user": rep}}},
        )
    )
    assert response.status_code == 200


# -- 1. who may see a lead, and the numbers -------------------------------------------------


def test_a_lead_is_shown_only_to_its_owners_their_manager_and_the_definition_owners(
    app, db, fake_slack, owners_in_slack
):
    app.post_leads(lead("crm-1"))  # to rep1
    app.drain()
    [first] = rows(db, Handoff)
    reassign_to(app, "U0MGR", first.id, "U0REP2")
    wait_until(lambda: len(rows(db, Handoff)) == 2)

    # rep1 had it, rep2 has it, mgr manages both, the two owners own the definition.
    for user_id in ("U0REP1", "U0REP2", "U0MGR", "U0MKT", "U0SALES"):
        story = command(app, user_id, "lead crm-1")
        assert story.startswith("```Lead crm-1: Acme"), user_id
        assert "crm-1@acme.example" in story

    # Anyone else learns nothing, not even whether the lead exists.
    fake_slack.add_user("U0OTHERREP", "other-rep@example.com")
    for user_id, lead_id in (("U0STRANGER", "crm-1"), ("U0OTHERREP", "crm-1")):
        refusal = command(app, user_id, f"lead {lead_id}")
        assert refusal == LEAD_REFUSED
        assert "acme" not in refusal.lower() and "rep1" not in refusal
    assert command(app, "U0STRANGER", "lead no-such-lead") == LEAD_REFUSED


def test_an_nz_reps_manager_sees_only_their_teams_leads(app_factory, db, tmp_path: Path):
    """A manager of another team is a stranger to this lead."""
    text = (DATA / "definition.yml").read_text()
    text = text.replace("nz-rep@example.com: mgr@example.com", "nz-rep@example.com: nz@example.com")
    path = tmp_path / "definition.yml"
    path.write_text(text)
    app = app_factory(db, defn=load_definition(path))
    app.post_leads([lead("au-1"), lead("nz-1", attributes={"employees": 250, "country": "NZ"})])
    app.drain()
    assert command(app, "U0MGR", "lead au-1").startswith("```Lead au-1")
    assert command(app, "U0MGR", "lead nz-1") == LEAD_REFUSED


def test_the_numbers_are_for_people_the_definition_names(app, fake_slack, owners_in_slack):
    app.post_leads(lead("crm-1"))
    app.drain()
    fake_slack.add_user("U0FORMER", "former@example.com")
    app.post_leads(lead("crm-2", owner="former@example.com"))  # has owned a handoff
    for user_id in ("U0REP2", "U0MGR", "U0MKT", "U0FORMER"):
        assert "Handed off 2" in command(app, user_id, "stats"), user_id
    assert command(app, "U0STRANGER", "stats") == NUMBERS_REFUSED
    assert command(app, "U0STRANGER", "stats 2026-W47") == NUMBERS_REFUSED


def test_refusing_a_stranger_never_shows_an_email(app_factory, db, fake_slack, tmp_path: Path):
    """The manager is named by mention when Slack knows them, else only as 'their manager'."""
    text = (DATA / "definition.yml").read_text()
    text = text.replace("rep1@example.com: mgr@example.com", "rep1@example.com: gone@example.com")
    path = tmp_path / "definition.yml"
    path.write_text(text)
    app = app_factory(db, defn=load_definition(path))
    app.post_leads(lead("crm-1"))
    app.drain()
    [handoff] = rows(db, Handoff)
    click(app, "U0STRANGER", ACCEPT, handoff.id)
    [told] = fake_slack.wait_for("chat.postEphemeral")
    assert told.args["text"] == "Only <@U0REP1> or their manager can decide on this lead."
    assert "@example.com" not in told.args["text"]
    assert status_of(db, handoff.id) == "open"


# -- 2. lead text is data, never markup ----------------------------------------------------

HOSTILE = {
    "company": "<!channel>",
    "name": "<https://evil.example|Click to verify>",
    "title": "```Boss``` & co",
    "source": "<!here>",
    "campaign": "<!subteam^S0ALL|everyone>",
}
NOTE = "<!everyone> see <https://evil.example/x|the deck>"
RAW = ("<!channel>", "<https://evil", "<!here>", "<!everyone>", "<!subteam")


def mrkdwn_texts(value: Any, *, top: bool = True) -> Iterator[str]:
    """Every string Slack would read as mrkdwn in a call's arguments: the top-level
    `text`, and each mrkdwn text object in its blocks or view (plain_text is not parsed)."""
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, dict):
        if top and isinstance(value.get("text"), str):
            yield value["text"]
        if value.get("type") == "mrkdwn":
            yield value["text"]
        for key, item in value.items():
            if key != "text" or not top:
                yield from mrkdwn_texts(item, top=False)
    elif isinstance(value, list):
        for item in value:
            yield from mrkdwn_texts(item, top=False)


def assert_escaped(texts: list[str], *, where: str) -> None:
    joined = "\n".join(texts)
    for raw in RAW:
        assert raw not in joined, (where, raw, joined)
    assert "&lt;!channel&gt;" in joined, (where, joined)


def test_hostile_lead_text_reaches_slack_escaped_everywhere(app, db, fake_slack):
    with freeze_time(MONDAY_10):
        assert app.post_leads(lead("crm-1", **HOSTILE)).status_code == 202
        app.drain()
    [card] = fake_slack.successful("chat.postMessage")
    [handoff] = rows(db, Handoff)

    with freeze_time(MONDAY_10 + timedelta(minutes=5)):
        click(app, "U0REP1", REJECT, handoff.id, trigger_id="t-reject")
        click(app, "U0MGR", REASSIGN, handoff.id, trigger_id="t-reassign")
        modals = fake_slack.wait_for("views.open", count=2)
        queue = command(app, "U0REP1", "queue")
        home = [open_home(app, fake_slack, user) for user in ("U0REP1", "U0MGR")]
    with freeze_time(MONDAY_10 + timedelta(hours=2)):
        reminders.sweep(app.services)
        app.drain()
    with freeze_time(MONDAY_10 + timedelta(hours=4, seconds=20)):
        reminders.sweep(app.services)
        app.drain()
    dms = {c.args["channel"]: c for c in fake_slack.successful("chat.postMessage")}
    nudge = fake_slack.successful("chat.postMessage")[1]
    escalation = dms["U0MGR"]
    with freeze_time(MONDAY_10 + timedelta(hours=5)):
        submit_reject(app, "U0REP1", handoff.id, "other", NOTE)
        wait_until(lambda: status_of(db, handoff.id) == "rejected")
        app.drain()
        story = command(app, "U0REP1", "lead crm-1")
    # The live clock at 50% and 100%, then the rejection.
    clock_half, clock_due, card_update = fake_slack.successful("chat.update")
    with freeze_time(datetime(2026, 11, 30, 9, 0, tzinfo=SYDNEY)):
        assert digest.run_scheduled(app.services)
        app.drain()
    posted = fake_slack.successful("chat.postMessage")[-1]
    assert posted.args["channel"] == "#marketing"

    for where, call_args in {
        "card": card.args,
        "reject modal": modals[0].args,
        "reassign modal": modals[1].args,
        "rep's App Home": {"view": home[0]},
        "manager's App Home": {"view": home[1]},
        "nudge": nudge.args,
        "escalation": escalation.args,
        "card's clock at 50%": clock_half.args,
        "card's clock at 100%": clock_due.args,
        "updated card": card_update.args,
        "digest": posted.args,
    }.items():
        assert_escaped(list(mrkdwn_texts(call_args)), where=where)
    assert_escaped([queue], where="/handoff queue")
    assert_escaped([story], where="/handoff lead")
    # Nothing else the fake saw carried the raw markup in mrkdwn either.
    for call in fake_slack.calls:
        for text in mrkdwn_texts(call.args):
            assert not any(raw in text for raw in RAW), (call.method, text)

    # The story stays one code block: the title's backticks cannot close it.
    assert story.startswith("```") and story.endswith("```") and story.count("```") == 2
    assert "ˋˋˋBossˋˋˋ &amp; co" in json.dumps(card.args["blocks"], ensure_ascii=False)
    assert "&lt;https://evil.example|Click to verify&gt;" in card.args["text"]
    assert "&lt;!everyone&gt; see" in json.dumps(card_update.args["blocks"])
    assert "&lt;!channel&gt;" in posted.args["text"]


def test_a_long_story_keeps_its_code_fence(app, db):
    app.post_leads(lead("crm-1", company="`" * 500))
    app.drain()
    [handoff] = rows(db, Handoff)
    submit_reject(app, "U0REP1", handoff.id, "other", "<" * 2900)
    wait_until(lambda: status_of(db, handoff.id) == "rejected")
    story = command(app, "U0REP1", "lead crm-1")
    assert len(story) <= 3000
    # The company's backticks cannot end the block; the cut keeps the closing fence
    # and never falls inside an entity.
    assert story.startswith("```Lead crm-1: ˋˋˋ") and story.count("```") == 2
    assert re.search(r"(&lt;)+…```$", story)


# -- 12. App Home block ids ----------------------------------------------------------------


def test_a_manager_with_a_long_queue_and_a_long_team_gets_a_valid_home(
    app_factory, db, fake_slack, tmp_path: Path
):
    """Slack refuses a view whose blocks share an id (the fake does too): each queue
    pages on its own ids, and a lead in both queues is not a duplicate."""
    text = (DATA / "definition.yml").read_text()
    text = text.replace(
        "    nz-rep@example.com: mgr@example.com\n",
        "    nz-rep@example.com: mgr@example.com\n    mgr@example.com: mgr@example.com\n",
    )
    path = tmp_path / "definition.yml"
    path.write_text(text)
    app = app_factory(db, defn=load_definition(path))
    leads = [lead(f"m-{i}", owner="mgr@example.com") for i in range(17)]
    leads += [lead(f"r-{i}", owner="rep1@example.com") for i in range(17)]
    assert app.post_leads(leads).status_code == 202

    view = open_home(app, fake_slack, "U0MGR")
    block_ids = [block["block_id"] for block in view["blocks"] if "block_id" in block]
    assert len(block_ids) == len(set(block_ids))
    dump = json.dumps(view)
    assert dump.count("Show more") == 2
    assert len(view["blocks"]) <= 100


# -- 14. retried and repeated clicks, refusals where the bot cannot post -------------------


@pytest.fixture
def handed_off(app, db) -> Handoff:
    app.post_leads(lead("crm-1"))
    app.drain()
    [handoff] = rows(db, Handoff)
    return handoff


def retried_click(app, user_id: str, action_id: str, handoff_id: int) -> None:
    """The same click re-sent by Slack, which got no ack in time."""
    body = block_actions(user_id=user_id, action_id=action_id, value=str(handoff_id))
    headers = sign(body, SIGNING_SECRET, retry_num=1)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = app.http.post("/slack/events", content=body.encode(), headers=headers)
    assert response.status_code == 200


def test_a_click_slack_retries_is_decided_once_and_says_nothing_more(
    app, db, fake_slack, handed_off
):
    click(app, "U0REP1", ACCEPT, handed_off.id)
    wait_until(lambda: status_of(db, handed_off.id) == "accepted")
    for _ in range(3):
        retried_click(app, "U0REP1", ACCEPT, handed_off.id)
    retried_click(app, "U0STRANGER", ACCEPT, handed_off.id)  # told the first time already
    retried_click(app, "U0REP1", REJECT, handed_off.id)  # its trigger_id has expired
    finish_acked_work(app)
    assert fake_slack.calls_to("chat.postEphemeral") == []
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the card, nothing more
    assert fake_slack.calls_to("views.open") == []
    assert status_of(db, handed_off.id) == "accepted"


def test_a_retried_click_that_was_never_seen_still_decides(app, db, fake_slack, handed_off):
    retried_click(app, "U0REP1", ACCEPT, handed_off.id)
    wait_until(lambda: status_of(db, handed_off.id) == "accepted")


@pytest.mark.parametrize("error", ["not_in_channel", "channel_not_found"])
def test_a_refusal_where_the_bot_cannot_post_comes_as_a_dm(app, db, fake_slack, handed_off, error):
    fake_slack.fail_next("chat.postEphemeral", status=200, error=error)
    click(app, "U0STRANGER", ACCEPT, handed_off.id, channel="C0SHARED")
    [dm] = [
        call
        for call in fake_slack.wait_for("chat.postMessage", count=2)
        if call.args["channel"] == "U0STRANGER"
    ]
    assert dm.args["text"].startswith("Only <@U0REP1> or their manager")
    [ephemeral] = fake_slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["channel"] == "C0SHARED" and not ephemeral.ok


# -- 19. why a rep got the lead, in words --------------------------------------------------


def card_context(call) -> str:
    blocks = call.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return json.dumps(blocks[-1], ensure_ascii=False)


def test_the_card_says_why_in_words_a_rep_understands(app, db, fake_slack):
    nz = lead("nz-1", attributes={"employees": 250, "country": "NZ"})
    response = app.post_leads([lead("au-1"), nz, lead("own-1", owner="rep2@example.com")])
    whys = [result["why"] for result in response.json()["results"]]
    assert whys == [
        "next in the general rotation of 2 reps",
        "country is NZ — the rep for leads like this",
        "named as the lead's owner",
    ]
    app.drain()
    cards = {call.args["channel"]: call for call in fake_slack.successful("chat.postMessage")}
    au, nz_card, own = cards["U0REP1"], cards["U0NZREP"], cards["U0REP2"]
    assert "Why you: next in the general rotation of 2 reps" in card_context(au)
    assert "Why you: country is NZ — the rep for leads like this" in card_context(nz_card)
    assert "Why you: named as the lead's owner" in card_context(own)
    for call in (au, nz_card, own):
        assert not re.search(r"routing\[|round-robin", card_context(call))
    story = command(app, "U0NZREP", "lead nz-1")
    assert "to nz-rep@example.com (country is NZ — the rep for leads like this)" in story


def test_a_reassigned_card_says_who_passed_it_on(app, db, fake_slack, handed_off):
    app.services.directory.by_user_id("U0MGR")
    reassign_to(app, "U0MGR", handed_off.id, "U0REP2")
    wait_until(lambda: len(rows(db, Handoff)) == 2)
    app.drain()
    [card] = [c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == "U0REP2"]
    context = card_context(card)
    assert "Why you: reassigned by mgr@example.com (was with rep1@example.com)" in context
    assert "&lt;@" not in context
