"""The README's own examples, run as a newcomer would run them, so they cannot drift."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.definition import load_definition
from tests.conftest import INTAKE_SECRET, REPS, lead

ROOT = Path(__file__).parent.parent


def shell_snippet(section: str) -> str:
    """The first ```sh block under the README heading `## {section}`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    _, found, rest = readme.partition(f"\n## {section}\n")
    assert found, f"README.md has no section '{section}'"
    body = rest.split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", body, re.DOTALL)
    assert match, f"README.md section '{section}' has no sh block"
    return match.group(1)


def test_the_sending_leads_example_hands_a_lead_off(app_factory, db, fake_slack) -> None:
    missing = [tool for tool in ("bash", "curl", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the README example needs {' and '.join(missing)}, not installed here")
    app = app_factory(db, defn=load_definition(ROOT / "qualification.yml"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HANDOFF_INTAKE_SECRET": INTAKE_SECRET,  # what the app was started with
        "PORT": str(app.server.port),
    }
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell_snippet("Sending leads")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    [result] = json.loads(run.stdout)["results"]  # the body of a 202 (400/401 differ)
    assert (result["outcome"], result["score"]) == ("handed_off", 50), result
    # Someone in Slack gets the card: the newcomer sees the lead arrive.
    assert result["owner"] in REPS
    app.drain()
    [post] = fake_slack.calls_to("chat.postMessage")
    assert post.args["channel"] == REPS[result["owner"]]


def test_the_script_recipe_signs_and_sends_leads(app_factory, db, fake_slack, monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.partition("\n## Sending leads\n")[2].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    app = app_factory(db)
    monkeypatch.setenv("HANDOFF_INTAKE_SECRET", INTAKE_SECRET)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    send_leads = namespace["send_leads"]
    url = f"http://127.0.0.1:{app.server.port}/leads"
    [result] = send_leads([lead("script-1")], url=url)  # type: ignore[operator]
    assert result["outcome"] == "handed_off"
    [again] = send_leads(lead("script-1"), url=url)  # type: ignore[operator]
    assert again["outcome"] == "unchanged"
