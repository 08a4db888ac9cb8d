"""The one HTTP server: Slack's Request URL, lead intake and the health check.

Served by waitress (a production WSGI server with a thread pool). The same
process runs the outbox worker and the scheduler, and connects over Socket Mode
when an app token is set.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import waitress
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import __version__, clock, metrics
from bot.crm.webhook import HubSpotWebhook
from bot.intake import DatabaseBusy, Intake, report_received
from bot.leads import InvalidLeads, parse_body
from bot.readiness import SlackWatch, check_slack
from bot.services import Services
from bot.settings import secret
from bot.signing import unix_seconds, verify_intake
from bot.slack import KeepAliveWebClient
from bot.wsgi import MAX_BODY, BodyRefused, Response, read_body

logger = logging.getLogger(__name__)

# POST /leads runs on at most this many threads at once, added to the server's own:
# leads waiting on a busy database can never hold the threads Slack's acks need.
INTAKE_SLOTS = 8
# How long one lead batch may wait for a busy database (a write lock held elsewhere).
INTAKE_BUSY_SECONDS = 10.0

StartResponse = Callable[..., Any]

_STATUS = {
    200: "200 OK",
    202: "202 Accepted",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    411: "411 Length Required",
    413: "413 Content Too Large",
    503: "503 Service Unavailable",
}


class Router:
    """The WSGI app: Slack's route (handed to Bolt), lead intake, health, readiness, metrics."""

    def __init__(
        self,
        services: Services,
        bolt_app: App,
        readiness: Callable[[], list[str]] | None = None,
    ) -> None:
        self.services = services
        self.readiness = readiness or (lambda: [])
        self.metrics = metrics.registry_for(services.db)
        self.slack = SlackRequestHandler(bolt_app)
        # Bolt logs the whole body of every request it refuses at INFO: keep bodies out.
        logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
        self.intake = Intake(
            services.db,
            services.definitions,
            delivery=services.delivery,
            busy_budget=INTAKE_BUSY_SECONDS,
        )
        self._intake_secret = secret(services.settings.handoff_intake_secret)
        self._intake_slots = threading.BoundedSemaphore(INTAKE_SLOTS)
        self.hubspot = HubSpotWebhook(services, self.intake, self._intake_slots)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/slack/events":
            if method != "POST":
                return _reply(start_response, 405, {"error": "use POST"})
            if unix_seconds(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "0")) is None:
                # Bolt's verifier raises on a timestamp of hundreds of digits (a 500 and
                # a traceback): refused here, as Bolt refuses a bad signature.
                return _reply(start_response, 401, {"error": "invalid request"})
            return self.slack(environ, start_response)
        if path == "/leads":
            if method != "POST":
                return _reply(start_response, 405, {"error": "use POST"})
            return self.bounded_post_leads(environ, start_response)
        if path == "/hubspot/webhook":
            if method != "POST":
                return _reply(start_response, 405, {"error": "use POST"})
            status, payload = self.hubspot(environ)
            return _reply(start_response, status, payload, retry_after=5 if status == 503 else None)
        if path == "/healthz":
            problem = self.services.db.health_problem()
            return _reply(start_response, 503 if problem else 200, {"status": problem or "ok"})
        if path == "/readyz":
            problems = self.readiness()
            body = {"ready": not problems, "problems": problems, "version": __version__}
            return _reply(start_response, 503 if problems else 200, body)
        if path == "/metrics":
            start_response(
                _STATUS[200],
                [("Content-Type", metrics.CONTENT_TYPE), ("Cache-Control", "no-store")],
            )
            return [metrics.render(self.metrics)]
        return _reply(start_response, 404, {"error": "not found"})

    def bounded_post_leads(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """post_leads on at most INTAKE_SLOTS threads. Over that (answered at once,
        nothing stored, nothing queued for a thread), or when the database stays busy
        past the budget (the batch rolled back): 503 with Retry-After, which CRMs retry."""
        started = time.perf_counter()
        status = 503
        if not self._intake_slots.acquire(blocking=False):
            metrics.INTAKE_SECONDS.labels("503").observe(time.perf_counter() - started)
            return _reply(
                start_response, 503, {"error": "too many lead requests at once"}, retry_after=1
            )
        try:
            status, payload = self.post_leads(environ)
            return _reply(start_response, status, payload)
        except DatabaseBusy as exc:
            logger.warning("POST /leads answered 503: %s", exc)
            return _reply(
                start_response, 503, {"error": "database busy, nothing stored"}, retry_after=5
            )
        finally:
            self._intake_slots.release()
            metrics.INTAKE_SECONDS.labels(str(status)).observe(time.perf_counter() - started)

    def post_leads(self, environ: dict[str, Any]) -> Response:
        try:
            body = read_body(environ)
        except BodyRefused as refused:
            return refused.response
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        problem = verify_intake(self._intake_secret, headers, body, time.time())
        if problem:
            logger.warning("rejected POST /leads: %s", problem)
            return 401, {"error": problem}
        try:
            leads = parse_body(body)
        except InvalidLeads as exc:
            return 400, {"errors": [error.to_json() for error in exc.errors]}
        outcomes = self.intake.ingest(leads, now=clock.now())  # starts the new cards
        results = [outcome.to_json() for outcome in outcomes]
        for result in results:
            report_received(result)
        return 202, {"results": results}


def _reply(
    start_response: StartResponse, status: int, payload: Any, *, retry_after: int | None = None
) -> list[bytes]:
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    start_response(_STATUS.get(status, f"{status} Status"), headers)
    return [body]


class HandoffServer:
    """HTTP server + outbox worker + scheduler (+ Socket Mode), started and stopped together."""

    def __init__(
        self,
        services: Services,
        *,
        host: str = "0.0.0.0",
        port: int = 3000,
        threads: int = 8,
        slack_watch: SlackWatch | None = None,
    ) -> None:
        from bot.app import build_bolt_app
        from bot.scheduler import build_scheduler

        self.services = services
        self.slack_watch = slack_watch or SlackWatch(lambda: check_slack(services.slack))
        self.bolt_app = build_bolt_app(services)
        self.router = Router(services, self.bolt_app, self.readiness_problems)
        self.http = waitress.create_server(
            self.router,
            host=host,
            port=port,
            threads=threads + INTAKE_SLOTS,  # `threads` stay free for Slack and /healthz
            ident="handoff",
            max_request_body_size=MAX_BODY * 2,
            channel_timeout=30,
        )
        self.scheduler = build_scheduler(services)
        self.socket_mode: Any = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return int(self.http.effective_port)  # type: ignore[union-attr]

    def readiness_problems(self) -> list[str]:
        """Why this process should not get traffic yet; empty when it is ready."""
        problems = []
        database = self.services.db.health_problem()
        if database:
            problems.append(database)
        slack = self.slack_watch.state
        if not slack.ok:
            problems.append(slack.problem or "Slack has not accepted the token yet")
        if not self.scheduler.running:
            problems.append("the scheduler is not running")
        if not self.services.delivery.running:
            problems.append("the outbox worker is not running")
        if self._wants_socket_mode() and not self._socket_connected():
            problems.append("Socket Mode is not connected")
        return problems

    def _wants_socket_mode(self) -> bool:
        return bool(secret(self.services.settings.slack_app_token))

    def _socket_connected(self) -> bool:
        client = getattr(self.socket_mode, "client", None)
        return bool(client is not None and client.is_connected())

    def start_background(self) -> None:
        self.slack_watch.start()
        self.services.delivery.start()
        self.scheduler.start()
        if self._wants_socket_mode():
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            self.socket_mode = SocketModeHandler(
                self.bolt_app, secret(self.services.settings.slack_app_token)
            )
            self.socket_mode.connect()
            logger.info("connected to Slack over Socket Mode")

    def serve_forever(self) -> None:
        """Block serving HTTP until stop() (or SIGTERM / SIGINT in the main thread)."""
        try:
            self.http.run()
        except OSError:
            # stop() from another thread closes the sockets under waitress's select();
            # the loop ends on "Bad file descriptor". Anything else is a real error.
            if not self._stopped.is_set():
                raise

    def run(self) -> None:
        """What `handoff run` does: start, serve, and on SIGTERM drain and exit."""
        signal.signal(signal.SIGTERM, _raise_system_exit)
        settings = self.services.settings
        logger.info(
            "Handoff %s starting: %s, %s database, definition v%s, port %s",
            __version__,
            "Socket Mode and HTTP" if self._wants_socket_mode() else "HTTP mode",
            self.services.db.engine.dialect.name,
            self.services.definition.version,
            settings.port,
        )
        self.start_background()
        # What start-up built (modules, the definition, the Bolt app) lives as long as the
        # process: keep it out of the cyclic GC, whose full collections over it stopped
        # every thread (every ack in flight) for ~50 ms.
        gc.freeze()
        logger.info("Handoff listening on port %s", self.port)
        try:
            self.serve_forever()  # returns after SIGTERM/SIGINT, in-flight requests finished
        finally:
            self.stop()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.http.task_dispatcher.shutdown(cancel_pending=False, timeout=10)
        self.http.close()
        # Idle keep-alive connections would keep waitress's loop alive until they time out.
        for channel in list(self.http._map.values()):  # noqa: SLF001 - waitress has no API for it
            channel.close()
        self.slack_watch.stop()
        if self.socket_mode is not None:
            self.socket_mode.close()
        # Finish what listeners left for after their ack (decisions, modals, App Home).
        self.bolt_app.listener_runner.listener_executor.shutdown(wait=True)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.services.delivery.stop()
        if isinstance(self.services.slack, KeepAliveWebClient):
            self.services.slack.close()
        self.services.db.dispose()
        logger.info("Handoff stopped")


def _raise_system_exit(signum: int, _frame: Any) -> None:
    # waitress's loop turns SystemExit into an orderly stop of its worker threads.
    raise SystemExit(0)
