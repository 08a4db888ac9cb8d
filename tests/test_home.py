"""App Home and /handoff through the running app and the fake Slack Web API."""

from __future__ import annotations

import json

from bot.access import LEAD_REFUSED
from tests.conftest import lead
from tests.slackreq import event_callback, slash_command


def open_home(app, fake_slack, user_id: str) -> dict:
    before = len(fake_slack.successful("views.publish"))
    event = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": f"D{user_id}",
        "tab": "home",
        "event_ts": "1700000000.000001",
    }
    assert app.slack(event_callback(event), json_body=True).status_code == 200
    call = fake_slack.wait_for("views.publish", count=before + 1)[-1]
    assert call.args["user_id"] == user_id
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def test_rep_sees_their_queue_with_buttons(app, fake_slack):
    app.post_leads(lead("crm-1"))
    app.drain()
    view = open_home(app, fake_slack, "U0REP1")
    dump = json.dumps(view)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert "Acme" in dump and "business time left" in dump
    assert "handoff_accept" in dump and "handoff_reject" in dump
    assert "A lead is qualified when" in dump


def test_manager_sees_the_team_and_a_stranger_an_empty_queue(app, fake_slack):
    app.post_leads(lead("crm-1"))
    app.drain()
    manager = json.dumps(open_home(app, fake_slack, "U0MGR"))
    assert "Your team" in manager and "<@U0REP1>" in manager and "1 open" in manager
    stranger = json.dumps(open_home(app, fake_slack, "U0STRANGER"))
    assert "Nothing waiting for you" in stranger and "Your team" not in stranger


def test_home_pages_a_long_queue(app, fake_slack):
    app.post_leads([lead(f"crm-{i}", owner="rep1@example.com") for i in range(40)])
    app.drain()
    view = open_home(app, fake_slack, "U0REP1")
    assert len(view["blocks"]) <= 100
    assert "Show more (25 left)" in json.dumps(view)


def command(app, user_id: str, text: str) -> str:
    response = app.slack(slash_command(user_id=user_id, text=text))
    assert response.status_code == 200
    # Bolt answers ack(text=...) as a plain-text body: Slack shows it only to the user.
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_slash_command(app):
    app.post_leads(lead("crm-1"))
    app.drain()
    assert "`/handoff queue`" in command(app, "U0REP1", "help")
    assert "`/handoff queue`" in command(app, "U0REP1", "nonsense")
    assert command(app, "U0REP1", "queue").startswith("• *Acme*: ")
    assert command(app, "U0REP2", "queue") == "Nothing waiting for you."
    assert "scores at least 50 points" in command(app, "U0REP1", "definition")
    assert "Handed off 1" in command(app, "U0REP1", "stats")
    story = command(app, "U0REP1", "lead crm-1")
    assert "Lead crm-1: Acme" in story and "handed off" in story
    assert command(app, "U0REP1", "lead nope") == LEAD_REFUSED
