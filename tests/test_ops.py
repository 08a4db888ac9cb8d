"""Operating it (DESIGN.md "Operating it"): `handoff run` as a real process against the
fake Slack (start-up checks, /readyz, the log), /metrics through the wire, `--version`,
and the Dockerfile's own commands in a fresh virtual environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

import bot
from bot import clock
from bot.blocks.card import ACCEPT
from bot.blocks.modals import REJECT_VIEW
from bot.settings import Settings
from store.models import Handoff
from tests.conftest import DATA, intake_headers, lead
from tests.fakeslack import MANIFEST_SCOPES, Call, FakeSlack
from tests.slackreq import block_actions, sign, view_submission

ROOT = Path(__file__).parent.parent
HANDOFF = Path(sys.prefix, "bin", "handoff")  # this environment's console script
# Secrets of the runs below: long and unlike anything else, so a leak cannot hide.
BOT_TOKEN = "xoxb-1111-2222-opsTestBotToken9f3"
SIGNING_SECRET = "opsTestSigningSecret-5f2c8e"
INTAKE_SECRET = "opsTestIntakeSecret-9d4e1a"
SECRETS = (BOT_TOKEN, BOT_TOKEN.removeprefix("xoxb-"), SIGNING_SECRET, INTAKE_SECRET)
# Loggers that are chatty at INFO (a line per scheduler tick, per connection).
LIBRARIES = ("apscheduler", "waitress", "slack_bolt", "slack_sdk", "urllib3", "httpx", "httpcore")
START_SECONDS = 60.0  # generous: other test runs share the machine's two cores


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll `condition` until it is truthy (and return it), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_env(tmp_path: Path, fake_slack: FakeSlack, **changes: str | None) -> dict[str, str]:
    """The environment of one `handoff run` (and nothing of the developer's); a change
    of None removes the variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "HANDOFF_INTAKE_SECRET": INTAKE_SECRET,
        "SLACK_API_URL": fake_slack.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}",
        "HANDOFF_DEFINITION": str(DATA / "definition.yml"),
        "PORT": str(free_port()),
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_to_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`handoff run` that is expected to stop on its own."""
    return subprocess.run(
        [str(HANDOFF), "run", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
    )


class Served:
    """A `handoff run` process serving on a loopback port; its stdout and stderr go to
    files, read whole once it has stopped."""

    def __init__(self, command: list[str], env: dict[str, str], logs: Path, cwd: Path) -> None:
        self.stdout, self.stderr = logs / "stdout.log", logs / "stderr.log"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        wait_until(self._answers, timeout=START_SECONDS, what="handoff run serving HTTP")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"handoff run exited {self.process.returncode}:\n{self.log()}")
        try:
            self.http.get("/healthz")
        except httpx.TransportError:
            return False
        return True

    def ready(self) -> httpx.Response:
        return wait_until(
            lambda: (r := self.http.get("/readyz")).status_code == 200 and r,
            timeout=START_SECONDS,
            what="/readyz 200",
        )

    def post_leads(self, payload: Any, *, secret: str = INTAKE_SECRET) -> httpx.Response:
        body = json.dumps(payload).encode()
        return self.http.post("/leads", content=body, headers=intake_headers(body, secret=secret))

    def slack(self, body: str, *, secret: str = SIGNING_SECRET) -> httpx.Response:
        headers = {**sign(body, secret), "Content-Type": "application/x-www-form-urlencoded"}
        return self.http.post("/slack/events", content=body.encode(), headers=headers)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; it drains and exits 0."""
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(START_SECONDS)
        assert self.process.returncode == 0, self.log()

    def kill(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stderr_lines(self) -> list[str]:
        return self.stderr.read_text(encoding="utf-8").splitlines()

    def log(self) -> str:
        """Everything the process wrote."""
        return self.stdout.read_text(encoding="utf-8") + self.stderr.read_text(encoding="utf-8")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `handoff run` processes (killed at the end if a test left one running)."""
    started: list[Served] = []

    def start(env: dict[str, str], command: list[str] | None = None, cwd: Path = ROOT) -> Served:
        logs = tmp_path / f"run-{len(started)}"
        logs.mkdir()
        started.append(Served(command or [str(HANDOFF), "run"], env, logs, cwd))
        return started[-1]

    yield start
    for served in started:
        served.kill()


def button_value(call: Call, action_id: str) -> str:
    """The value of a button in a posted message (a card's handoff id)."""
    blocks = call.args["blocks"]
    for block in json.loads(blocks) if isinstance(blocks, str) else blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {call.method}")


# -- start-up: fail fast, once --------------------------------------------------------------


def test_a_token_slack_refuses_stops_the_start_with_one_line(tmp_path, fake_slack) -> None:
    fake_slack.answer_auth_test(error="invalid_auth")
    result = run_to_exit(run_env(tmp_path, fake_slack))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Handoff cannot start: SLACK_BOT_TOKEN: Slack refused the token (invalid_auth)"
    ]
    assert len(fake_slack.calls_to("auth.test")) == 1  # refused: not retried


def test_a_token_without_a_scope_the_app_needs_stops_the_start(tmp_path, fake_slack) -> None:
    fake_slack.answer_auth_test(scopes=[s for s in MANIFEST_SCOPES if s != "users:read.email"])
    result = run_to_exit(run_env(tmp_path, fake_slack))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "Handoff cannot start: SLACK_BOT_TOKEN: the token lacks the scope(s) users:read.email;"
    )


def test_without_a_scopes_header_it_warns_and_serves(tmp_path, fake_slack, serve) -> None:
    fake_slack.answer_auth_test(scopes=None)  # some proxies drop Slack's headers
    served = serve(run_env(tmp_path, fake_slack))
    assert served.ready().json()["problems"] == []
    served.stop()
    first, *rest = served.stderr_lines()
    assert f"Handoff {bot.__version__} starting" in first  # the warning comes after it
    [warning] = [line for line in rest if "X-OAuth-Scopes" in line]
    assert " WARNING bot.readiness: Slack did not say which scopes the token has" in warning


def test_every_settings_problem_is_named_in_one_pass(tmp_path, fake_slack) -> None:
    env = run_env(
        tmp_path,
        fake_slack,
        PORT="abc",
        LOG_FORMAT="xml",
        DATABASE_URL="mysql://x",
        SLACK_SIGNING_SECRET=None,
    )
    result = run_to_exit(env)
    assert result.returncode == 2
    header, *problems = result.stderr.splitlines()
    assert header == "Handoff cannot start:"
    named = sorted(line.strip().split(":")[0] for line in problems)
    assert named == ["DATABASE_URL", "LOG_FORMAT", "PORT", "SLACK_SIGNING_SECRET"], problems
    assert "Traceback" not in result.stderr
    assert fake_slack.calls == []  # Slack is not asked while the settings are wrong


# -- readiness ------------------------------------------------------------------------------


def test_slack_down_at_start_is_not_ready_until_it_is_back(tmp_path, fake_slack, serve) -> None:
    fake_slack.set_outage(True)
    served = serve(run_env(tmp_path, fake_slack))  # it starts all the same
    response = served.http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    [problem] = body["problems"]
    assert "Slack" in problem
    assert served.http.get("/healthz").status_code == 200  # alive: don't restart it
    fake_slack.set_outage(False)
    assert served.ready().json() == {"ready": True, "problems": [], "version": bot.__version__}
    served.stop()


def test_the_version_in_the_cli_readyz_and_the_first_log_line(tmp_path, fake_slack, serve):
    assert bot.__version__ == version("handoff")  # the installed distribution's
    result = subprocess.run(
        [str(HANDOFF), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"handoff, version {bot.__version__}\n")
    served = serve(run_env(tmp_path, fake_slack))
    assert served.ready().json()["version"] == bot.__version__
    served.stop()
    first = served.stderr_lines()[0]
    assert f" INFO bot.server: Handoff {bot.__version__} starting: HTTP mode" in first


# -- the log --------------------------------------------------------------------------------


def test_json_log_one_line_per_lead_event_and_no_library_chatter(
    tmp_path, fake_slack, serve
) -> None:
    served = serve(run_env(tmp_path, fake_slack, LOG_FORMAT="json", LOG_LEVEL="INFO"))
    ids = ["crm-json-1", "crm-json-2", "crm-json-3"]
    leads = [lead(ids[0]), lead(ids[1]), lead(ids[2], signals=[])]
    assert served.post_leads(leads).status_code == 202
    card, _ = fake_slack.wait_for("chat.postMessage", count=2, timeout=30)
    [accepted] = [i for i in ids if f"`{i}`" in json.dumps(card.args["blocks"])]
    click = block_actions(
        user_id=card.args["channel"], action_id=ACCEPT, value=button_value(card, ACCEPT)
    )
    assert served.slack(click).status_code == 200
    fake_slack.wait_for("chat.update", timeout=30)  # the card now says accepted
    served.stop()

    records = [json.loads(line) for line in served.stderr_lines()]  # each line is JSON
    assert records[0]["message"].startswith(f"Handoff {bot.__version__} starting")
    received = [r for r in records if r.get("event") == "received"]
    assert sorted(r["lead_id"] for r in received) == ids
    outcomes = {r["lead_id"]: r["outcome"] for r in received}
    assert outcomes == {ids[0]: "handed_off", ids[1]: "handed_off", ids[2]: "nurture"}
    assert all(r["message"].startswith(f"lead {r['lead_id']} received: ") for r in received)
    delivered = [r["lead_id"] for r in records if r.get("event") == "delivered"]
    assert sorted(delivered) == ids[:2]  # one line per card, the nurture lead has none
    decided = [(r["lead_id"], r["decision"]) for r in records if r.get("event") == "decided"]
    assert decided == [(accepted, "accepted")]
    chatter = [
        r
        for r in records
        if r["logger"].split(".")[0] in LIBRARIES and r["level"] in ("DEBUG", "INFO")
    ]
    assert chatter == []


def test_the_whole_log_of_a_run_holds_no_secret_and_no_body(tmp_path, fake_slack, serve) -> None:
    # DEBUG: the most the process ever says, libraries included.
    served = serve(run_env(tmp_path, fake_slack, LOG_LEVEL="DEBUG"))
    good = [lead("crm-secret-1")]
    assert served.post_leads(good).status_code == 202
    # Forged Slack request: a bad signature, a body carrying our token (Bolt would log
    # the body of a request it refuses) and a token-like string.
    forged = urlencode(
        {
            "token": BOT_TOKEN,
            "payload": json.dumps({"type": "block_actions", "note": "forged-marker-7c1e"}),
            "other": "xoxp-9999-8888-notOurs",
        }
    )
    assert served.slack(forged, secret="not-the-signing-secret").status_code == 401
    # A lead signed with the wrong secret.
    bad_intake = {"id": "crm-secret-2", "email": "bad@x.example", "company": "bad-marker-3a9f"}
    assert served.post_leads(bad_intake, secret="not-the-intake-secret").status_code == 401
    # A decision, so that the log has the whole round trip.
    card = fake_slack.wait_for("chat.postMessage", timeout=30)[0]
    click = block_actions(
        user_id=card.args["channel"], action_id=ACCEPT, value=button_value(card, ACCEPT)
    )
    assert served.slack(click).status_code == 200
    fake_slack.wait_for("chat.update", timeout=30)
    served.stop()

    log = served.log()
    assert "rejected POST /leads" in log and "lead crm-secret-1 decided: accepted" in log
    for secret in SECRETS:
        assert secret not in log
    bodies = (json.dumps(good), forged, click, json.dumps(bad_intake))
    for text in (*bodies, "forged-marker-7c1e", "bad-marker-3a9f", "xoxp-9999-8888-notOurs"):
        assert text not in log


# -- metrics --------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(app: Any) -> Samples:
    response = app.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, label: str) -> dict[str, float]:
    """How much metric `name` moved per value of `label` (summed over its other labels;
    only the values that moved)."""
    changes: dict[str, float] = {}
    for key in {key for key in (*before, *after) if key[0] == name}:
        by = dict(key[1])[label]
        changes[by] = changes.get(by, 0.0) + after.get(key, 0.0) - before.get(key, 0.0)
    return {by: change for by, change in changes.items() if change}


def test_metrics_move_by_exactly_what_the_test_did(app, db, fake_slack) -> None:
    before = scrape(app)  # the counters are per process: other tests moved them too
    ids = [f"crm-metrics-{n}" for n in range(1, 6)]
    assert app.post_leads([lead(ids[0]), lead(ids[1]), lead(ids[2], signals=[])]).is_success
    assert app.post_leads(lead(ids[3], signals=[])).is_success
    assert app.post_leads(lead(ids[4]), secret="not-the-intake-secret").status_code == 401

    queued = scrape(app)
    outcomes = moved(before, queued, "handoff_leads_total", "outcome")
    assert outcomes == {"handed_off": 2, "nurture": 2}
    assert value(queued, "handoff_handoffs_total") - value(before, "handoff_handoffs_total") == 2
    assert moved(before, queued, "handoff_intake_request_seconds_count", "status") == {
        "202": 2,
        "401": 1,
    }
    # The outbox gauges read the database: two cards wait (this test's app sends nothing
    # until it drains), the oldest since the first request.
    assert value(queued, "handoff_outbox_pending") == 2
    assert 0 <= value(queued, "handoff_outbox_oldest_seconds") < 60
    with freeze_time(clock.now() + timedelta(minutes=6)):
        assert value(scrape(app), "handoff_outbox_oldest_seconds") >= 360

    fake_slack.fail_next("chat.postMessage", status=429, retry_after=1)  # got past by a retry
    app.drain()
    with db.session() as session:
        first, second = session.scalars(select(Handoff).order_by(Handoff.id)).all()
    accept = block_actions(user_id=first.owner_user_id, action_id=ACCEPT, value=str(first.id))
    assert app.slack(accept).status_code == 200
    reject = view_submission(
        user_id=second.owner_user_id,
        callback_id=REJECT_VIEW,
        private_metadata=str(second.id),
        values={
            "reason": {
                "reason": {"type": "static_select", "selected_option": {"value": "too_small"}}
            },
            "note": {"note": {"type": "plain_text_input", "value": "12 staff"}},
        },
    )
    assert app.slack(reject).status_code == 200
    # Both are written after their acks.
    wait_until(
        lambda: (
            moved(before, scrape(app), "handoff_decisions_total", "decision")
            == {"accepted": 1, "rejected": 1}
        ),
        timeout=30,
        what="both decisions counted",
    )
    app.drain()

    after = scrape(app)
    assert moved(before, after, "handoff_rejections_total", "reason") == {"too_small": 1}
    # Every call the app made, counted once under its method and how it ended; Bolt's
    # authorization asked auth.test once, through the app's client, for both requests.
    answered = fake_slack.calls
    assert len(fake_slack.calls_to("auth.test")) == 1
    assert [call.status for call in answered if not call.ok] == [429]
    slack_calls = moved(before, after, "handoff_slack_calls_total", "method")
    assert slack_calls == {m: len(fake_slack.successful(m)) for m in {c.method for c in answered}}
    assert moved(before, after, "handoff_slack_calls_total", "result") == {"ok": len(answered) - 1}
    # ... and every 429, also the one the retry got past.
    rate_limited = moved(before, after, "handoff_slack_rate_limited_total", "method")
    assert rate_limited == {"chat.postMessage": 1}
    assert len(fake_slack.successful("chat.postMessage")) == 2  # the two cards
    assert (
        value(after, "handoff_lead_to_dm_seconds_count")
        - value(before, "handoff_lead_to_dm_seconds_count")
        == 2
    )
    assert value(after, "handoff_outbox_pending") == 0
    assert value(after, "handoff_outbox_oldest_seconds") == 0
    assert value(after, "handoff_outbox_failed") == 0
    # Label values are bounded: never a lead id or an email.
    for _, labels in after:
        for label_value in dict(labels).values():
            assert "@" not in label_value and "crm-" not in label_value, label_value


# -- the container --------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (instruction.upper(), arguments.strip())
        for instruction, _, arguments in (
            line.partition(" ") for line in lines if line and not line.startswith("#")
        )
    ]


class Image:
    """The image's file system as a directory: `/app/x` in the Dockerfile is
    `root/app/x` here, in its paths and in the commands and values that name them."""

    def __init__(self, root: Path, instructions: list[tuple[str, str]]) -> None:
        self.root = root
        tops = {args.strip("/").split("/")[0] for name, args in instructions if name == "WORKDIR"}
        self._paths = re.compile(r"(?<![\w.:])/(" + "|".join(map(re.escape, tops)) + r")\b")

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def text(self, text: str) -> str:
        return self._paths.sub(lambda m: f"{self.root}/{m.group(1)}", text)


def test_the_dockerfile_commands_give_a_working_app(tmp_path, fake_slack, serve) -> None:
    """What `docker build` would run, in a fresh virtual environment: the files its
    COPY lines name, its `pip install`, then the image's ENV, CMD and HEALTHCHECK."""
    instructions = dockerfile()
    image = Image(tmp_path / "image", instructions)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    build_env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    build_env["VIRTUAL_ENV"] = str(venv)
    workdir, image_env, command, healthcheck = "/", {}, [], []
    for instruction, args in instructions:
        if instruction == "WORKDIR":
            workdir = os.path.join(workdir, args)
            image.path(workdir).mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = shlex.split(args)
            assert not any(s.startswith("--") for s in sources), "plain COPY only"
            target = image.path(os.path.join(workdir, dest))
            for source in sources:
                into = target / source if dest.endswith("/") else target
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, into, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, into)
        elif instruction == "RUN" and "pip install" in args:
            run = subprocess.run(
                ["sh", "-c", image.text(args)],
                cwd=image.path(workdir),
                env=build_env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        elif instruction == "ENV":
            image_env.update(
                (name, image.text(value))
                for name, _, value in (pair.partition("=") for pair in shlex.split(args))
            )
        elif instruction == "CMD":
            command = json.loads(args)
        elif instruction == "HEALTHCHECK":
            healthcheck = json.loads(args.partition(" CMD ")[2])
    assert command == ["handoff", "run"] and healthcheck[0] == "python"

    home = image.path(workdir)  # the last WORKDIR: where the app runs
    env = {"PATH": build_env["PATH"], "HOME": str(home), **image_env}

    def in_image(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=home, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    where = in_image("python", "-c", "import bot; print(bot.__file__)")
    assert where.stdout.startswith(str(venv)), where  # the installed copy, not this tree
    assert in_image("handoff", "--version").stdout == f"handoff, version {bot.__version__}\n"
    check = in_image("handoff", "definition", "check")  # HANDOFF_DEFINITION from ENV
    assert check.returncode == 0, check.stderr

    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        HANDOFF_INTAKE_SECRET=INTAKE_SECRET,
        SLACK_API_URL=fake_slack.url,
        PORT=str(free_port()),  # the HEALTHCHECK reads it too
    )
    served = serve(env, [str(venv / "bin" / command[0]), *command[1:]], home)
    served.ready()
    assert in_image(*healthcheck).returncode == 0
    served.stop()
    assert Path(image_env["DATABASE_URL"].removeprefix("sqlite:///")).is_relative_to(home)
    assert Path(image_env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_compose_runs_two_replicas_on_postgres_with_known_settings() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    replicas = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(replicas) == 2
    settings = {name.upper() for name in Settings.model_fields}
    for service in replicas.values():
        environment = service["environment"]
        assert set(environment) <= settings, set(environment) - settings  # no typo'd names
        assert environment["DATABASE_URL"].startswith("postgresql://")
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    # The proxy in front of them knows them by their compose names.
    upstreams = re.findall(r"server ([\w-]+):(\d+);", (ROOT / "deploy/nginx.conf").read_text())
    assert sorted(name for name, _ in upstreams) == sorted(replicas)
    assert {port for _, port in upstreams} == {str(Settings().port)}
