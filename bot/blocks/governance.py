"""What the owners of the definition see of a proposed change: the DM with the change,
its backtest and Approve / Decline, kept up to date in place; the Decline modal; and
the short notes that tell them (and the proposer) how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.blocks.common import (
    FALLBACK_TEXT,
    Block,
    Mrkdwn,
    actions,
    button,
    clip,
    context,
    header,
    md,
    mention,
    plain,
    section,
)

APPROVE = "definition_approve"
DECLINE = "definition_decline"
DECLINE_VIEW = "definition_decline_view"
DECLINE_NOTE_BLOCK = DECLINE_NOTE_ACTION = "decline_note"
EXAMPLES = 5


@dataclass(frozen=True)
class ProposalView:
    """A proposal as its DM shows it, to one owner (`role`)."""

    id: int
    role: str
    active_version: int
    proposed_by: str
    note: str | None
    changes: tuple[str, ...]
    backtest: dict[str, Any]
    state: str  # proposed | active | superseded | declined | withdrawn
    approvals: dict[str, str] = field(default_factory=dict)  # role -> Slack user id
    number: int | None = None  # the version it became
    ended_by: str | None = None
    end_note: str | None = None


def _backtest_lines(summary: dict[str, Any]) -> list[Mrkdwn]:
    if not summary:
        return [md("_No backtest: no stored leads yet._")]
    lines = [
        md(
            "On *{}* stored leads: *{}* would newly qualify, *{}* would drop out.",
            summary.get("leads", 0),
            summary.get("newly_qualified", 0),
            summary.get("no_longer_qualified", 0),
        ),
        md(
            "Past rejections: *{}* of {} would have been filtered out{}",
            summary.get("rejected_filtered", 0),
            summary.get("rejected", 0),
            "." if not summary.get("filtered_by_reason") else ":",
        ),
    ]
    for label, count in summary.get("filtered_by_reason", []):
        lines.append(md("    • {}: {}", label, count))
    lines.append(
        md(
            "Past accepts it would have lost: *{}* of {}{}",
            summary.get("accepted_dropped", 0),
            summary.get("accepted", 0),
            md(" (e.g. {})", ", ".join(summary["lost_examples"][:EXAMPLES]))
            if summary.get("lost_examples")
            else "",
        )
    )
    return lines


def _approval_line(view: ProposalView) -> Mrkdwn:
    parts = []
    for role in ("marketing", "sales"):
        user = view.approvals.get(role)
        parts.append(
            md("{}: approved by {}", role.capitalize(), mention(user))
            if user
            else md("{}: waiting", role.capitalize())
        )
    return Mrkdwn(" · ").join(parts)


def _status(view: ProposalView) -> Mrkdwn:
    if view.state == "proposed":
        if view.approvals.get(view.role):
            return md(":hourglass: You approved it; waiting for the other owner.")
        if view.approvals:
            return md(":eyes: The other owner approved it; it goes live when you do.")
        return md("Both owners must approve before it goes live.")
    if view.number is not None:
        return md(":white_check_mark: *Approved: now the active version {}.*", view.number)
    if view.state == "declined":
        return md(
            ":no_entry: *Declined* by {}: {}", mention(view.ended_by), view.end_note or "no note"
        )
    return md(":fast_forward: *Withdrawn*: {}", view.end_note or "replaced")


def proposal_text(view: ProposalView) -> str:
    return clip(
        f"Proposed change #{view.id} to the lead definition (active: version "
        f"{view.active_version}), proposed by {view.proposed_by}: "
        + ("; ".join(view.changes) or "no visible change"),
        FALLBACK_TEXT,
    )


def proposal_blocks(view: ProposalView) -> list[Block]:
    changes = (
        Mrkdwn("\n").join(md("• {}", line) for line in view.changes[:20])
        if view.changes
        else md("_No change to what is judged (comments or layout only)._")
    )
    blocks: list[Block] = [
        header(f"Proposed change #{view.id} to the lead definition"),
        section(
            md(
                "Proposed by *{}* against the active version *{}*.{}",
                view.proposed_by,
                view.active_version,
                md("\n>{}", view.note) if view.note else "",
            )
        ),
        section(md("*What changes*\n{}", changes)),
        section(
            md(
                "*Backtest on stored history*\n{}",
                Mrkdwn("\n").join(_backtest_lines(view.backtest)),
            )
        ),
        context(_approval_line(view)),
        section(_status(view)),
    ]
    if view.state == "proposed" and not view.approvals.get(view.role):
        blocks.append(
            actions(
                button("Approve", APPROVE, str(view.id), style="primary"),
                button("Decline", DECLINE, str(view.id), style="danger"),
                block_id=f"proposal_{view.id}",
            )
        )
    return blocks


def decline_modal(proposal_id: int) -> Block:
    return {
        "type": "modal",
        "callback_id": DECLINE_VIEW,
        "title": plain("Decline the change", 24),
        "submit": plain("Decline", 24),
        "close": plain("Cancel", 24),
        "private_metadata": str(proposal_id),
        "blocks": [
            section(
                md(
                    "Why decline proposed change *#{}*? Both owners and the proposer read it.",
                    proposal_id,
                )
            ),
            {
                "type": "input",
                "block_id": DECLINE_NOTE_BLOCK,
                "label": plain("Why"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": DECLINE_NOTE_ACTION,
                    "multiline": True,
                    "max_length": 3000,
                },
            },
        ],
    }


def note_blocks(text: Mrkdwn) -> list[Block]:
    return [section(text)]
