"""POST /leads -> 202 with routing depth against plain rotation, in the same run.

    python benchmarks/bench_routing.py [--leads 400] [--rounds 3]

Two definitions, each served by the app in a process of its own (as `handoff run`
serves it, on a fresh SQLite file, the fake Slack taking the cards):

- plain: `round_robin` over three reps (routing as it was);
- depth: `match_account` first, then a weighted round-robin (3:2:1) with a
  `daily_cap` per rep, so every lead pays for the account lookup (companies and
  email domains, a quarter of them repeating an earlier lead's, so it matches),
  the day's loads per rep and the rotation lock.

Leads are posted one at a time (the latency a CRM sees), the two apps taking turns
lead by lead, who goes first swapping each turn: taking turns round by round made
whichever app went second 30-40% slower, routing or not (each app's outbox drains
its cards while the other is timed). Prints median and p95
per definition and depth's p95 against plain's [target: within 10%]. Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import start_app_process  # noqa: E402
from store.db import Database  # noqa: E402
from tests.conftest import DATA, intake_headers, lead, make_settings  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402

REPS = {"rep1@example.com": "U0REP1", "rep2@example.com": "U0REP2", "rep3@example.com": "U0REP3"}
PLAIN = "{round_robin: [rep1@example.com, rep2@example.com, rep3@example.com]}"
DEPTH = (
    "{match_account: true}\n"
    "    - {round_robin: [{rep: rep1@example.com, weight: 3},"
    " {rep: rep2@example.com, weight: 2}, rep3@example.com], daily_cap: 100000}"
)


def definition(tmp: Path, name: str, routing: str) -> Path:
    text = (DATA / "definition.yml").read_text()
    text = text.replace("{round_robin: [rep1@example.com, rep2@example.com]}", routing)
    path = tmp / f"{name}.yml"
    path.write_text(text)
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class App:
    def __init__(self, tmp: Path, fake: FakeSlack, name: str, routing: str) -> None:
        db = Database(f"sqlite:///{tmp / (name + '.db')}")
        db.create_schema()
        db.dispose()
        path = definition(tmp, name, routing)
        self.process, base_url = start_app_process(make_settings(fake, db.url), path, db.url)
        self.connection = http.client.HTTPConnection(*base_url.removeprefix("http://").split(":"))
        self.name = name
        self.sent = 0

    def post(self, payload: object) -> float:
        body = json.dumps(payload).encode()
        begin = time.perf_counter()
        self.connection.request("POST", "/leads", body, intake_headers(body))
        response = self.connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - begin
        assert response.status == 202, response.status
        return elapsed

    def next_lead(self) -> float:
        """One lead: a new company and domain each, every fourth one repeating an earlier
        lead's company (an account match when depth routes)."""
        i = self.sent
        self.sent += 1
        company = f"Company {i // 4 * 4}" if i % 4 == 3 else f"Company {i}"
        return self.post(lead(f"{self.name}-{i}", company=company, email=f"x{i}@c{i}.example"))

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.join(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=400, help="leads per app per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (leads x rounds in all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_name, FakeSlack() as fake:
        tmp = Path(tmp_name)
        for email, user_id in REPS.items():
            fake.add_user(user_id, email)
        apps = [App(tmp, fake, "plain", PLAIN), App(tmp, fake, "depth", DEPTH)]
        try:
            for _ in range(50):  # warm: statements compiled, reps looked up
                for app in apps:
                    app.next_lead()
            times: dict[str, list[float]] = {app.name: [] for app in apps}
            # Lead by lead, in turns that swap who goes first: both apps see the same
            # background (the other's outbox draining its cards), whichever goes last.
            for n in range(args.rounds * args.leads):
                for app in apps if n % 2 else apps[::-1]:
                    times[app.name].append(app.next_lead())
        finally:
            for app in apps:
                app.stop()
    for name, values in times.items():
        print(
            f"POST /leads -> 202, {name:5s} routing ({len(values)} leads): "
            f"median {statistics.median(values) * 1000:5.2f} ms, "
            f"p95 {pct(values, 0.95) * 1000:5.2f} ms"
        )
    ratio = pct(times["depth"], 0.95) / pct(times["plain"], 0.95)
    print(
        f"depth (weights, caps, account match) p95 = {ratio:.2f}x plain rotation p95 "
        "[target <= 1.10x]"
    )


if __name__ == "__main__":
    main()
