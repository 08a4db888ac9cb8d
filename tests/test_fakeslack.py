"""The fake Slack API works with the real slack-sdk client, and signed requests verify."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from tests.fakeslack import FakeSlack
from tests.slackreq import block_actions, event_callback, sign, slash_command, view_submission


@pytest.fixture
def fake():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(fake):
    return WebClient(token="xoxb-test", base_url=fake.url)


def test_post_message_to_a_user_lands_in_their_dm(fake, client):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    first = client.chat_postMessage(channel="U0REP1", text="hi", blocks=blocks)
    second = client.chat_postMessage(channel="C0SALES", text="again")
    assert first["channel"] == "DU0REP1" and second["channel"] == "C0SALES"
    assert float(second["ts"]) > float(first["ts"])
    [call, _] = fake.calls_to("chat.postMessage")
    sent = call.args["blocks"]
    assert (json.loads(sent) if isinstance(sent, str) else sent) == blocks
    assert call.headers["authorization"] == "Bearer xoxb-test"


def test_lookup_by_email(fake, client):
    fake.add_user("U0REP1", "rep@example.com", name="Rep")
    user = client.users_lookupByEmail(email="REP@example.com")["user"]
    assert (user["id"], user["tz"], user["profile"]["email"]) == (
        "U0REP1",
        "Australia/Sydney",
        "rep@example.com",
    )
    with pytest.raises(SlackApiError) as err:
        client.users_lookupByEmail(email="nobody@example.com")
    assert err.value.response["error"] == "users_not_found"


def test_fail_next_429_with_retry_after(fake, client):
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["retry-after"] in ("7", ["7"])
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 200]
    assert len(fake.successful("chat.postMessage")) == 1


def test_fail_next_with_an_error(fake, client):
    fake.fail_next("chat.update", status=200, error="message_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.chat_update(channel="C1", ts="1.2", text="x")
        assert err.value.response["error"] == "message_not_found"
    assert client.chat_update(channel="C1", ts="1.2", text="x")["ok"]


def test_outage_answers_503(fake, client):
    fake.set_outage(True)
    with pytest.raises(SlackApiError) as err:
        client.auth_test()
    assert err.value.response.status_code == 503
    assert err.value.response["error"] == "service_unavailable"
    fake.set_outage(False)
    assert client.auth_test()["user_id"] == "UBOT"


def test_rate_limit_per_channel(fake, client):
    fake.rate_limit_per_channel(1, retry_after=2)
    client.chat_postMessage(channel="C1", text="1")
    client.chat_postMessage(channel="C2", text="1")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="2")
    assert err.value.response.status_code == 429 and fake.rate_limited == 1


def test_token_is_checked():
    with FakeSlack(token="xoxb-right") as strict:
        with pytest.raises(SlackApiError) as err:
            WebClient(token="xoxb-wrong", base_url=strict.url).auth_test()
        assert err.value.response["error"] == "invalid_auth"
        assert WebClient(token="xoxb-right", base_url=strict.url).auth_test()["ok"]


def test_views_and_uploads(fake, client):
    view = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": []}
    assert client.views_open(trigger_id="1.2.3", view=view)["view"]["id"].startswith("V")
    assert client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["ok"]
    client.files_upload_v2(channel="C1", content="a,b\n1,2\n", filename="leads.csv")
    assert list(fake.uploads.values()) == [b"a,b\n1,2\n"]
    assert fake.successful("files.completeUploadExternal")


def test_unknown_method(client):
    with pytest.raises(SlackApiError) as err:
        client.api_call("nope.nope")
    assert err.value.response["error"] == "unknown_method"


def test_wait_for_blocks_until_calls_arrive(fake, client):
    def later():
        time.sleep(0.1)
        for n in range(3):
            client.chat_postMessage(channel="C1", text=str(n))

    threading.Thread(target=later).start()
    assert len(fake.wait_for("chat.postMessage", count=3, timeout=5)) == 3
    fake.reset()
    assert fake.calls == []
    with pytest.raises(AssertionError, match="chat.postMessage"):
        fake.wait_for("chat.postMessage", timeout=0.1)


def test_signed_requests_verify():
    body = block_actions(user_id="U0REP1", action_id="handoff_accept", value="42")
    headers = sign(body, "s3cret")
    verifier = SignatureVerifier("s3cret")
    ts, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert verifier.is_valid(body, ts, signature)
    assert not SignatureVerifier("other").is_valid(body, ts, signature)
    payload = json.loads(parse_qs(body)["payload"][0])
    assert payload["type"] == "block_actions" and payload["actions"][0]["value"] == "42"


def test_request_shapes():
    pick = json.loads(
        parse_qs(block_actions(user_id="U1", action_id="pick", selected_user="U2"))["payload"][0]
    )
    assert pick["actions"][0]["type"] == "users_select"
    assert pick["actions"][0]["selected_user"] == "U2"
    sub = view_submission(user_id="U1", callback_id="cb", values={}, private_metadata="7")
    view = json.loads(parse_qs(sub)["payload"][0])["view"]
    assert (view["callback_id"], view["private_metadata"]) == ("cb", "7")
    assert parse_qs(slash_command(user_id="U1", text="help"))["text"] == ["help"]
    event = json.loads(event_callback({"type": "app_home_opened", "user": "U1"}))
    assert event["type"] == "event_callback" and event["event"]["user"] == "U1"


def test_connections_are_kept_alive_until_the_fake_stops():
    fake = FakeSlack().start()
    connection = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    for _ in range(2):
        connection.request("POST", "/api/auth.test", b"", {"Content-Length": "0"})
        response = connection.getresponse()
        assert json.loads(response.read())["ok"] and not response.will_close
    assert len({call.peer for call in fake.calls}) == 1
    fake.stop()
    assert connection.sock.recv(1) == b""  # hung up, as a stopped server would
    connection.close()


def test_calls_are_looked_up_by_method(fake, client):
    client.chat_postMessage(channel="C1", text="1")
    fake.fail_next("chat.postMessage", status=500)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="2")
    client.auth_test()
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [200, 500]
    assert [c.args["text"] for c in fake.successful("chat.postMessage")] == ["1"]
    assert [c.method for c in fake.calls] == ["chat.postMessage", "chat.postMessage", "auth.test"]
    fake.reset()
    assert fake.calls_to("chat.postMessage") == [] and fake.successful("auth.test") == []
