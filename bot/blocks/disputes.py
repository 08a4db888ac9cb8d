"""Disputes in Slack: marketing's modal, the manager's DM with Uphold / Reopen, the
outcome for marketing."""

from __future__ import annotations

from dataclasses import dataclass

from bot.blocks.common import (
    Block,
    Mrkdwn,
    actions,
    button,
    code,
    context,
    header,
    limit_blocks,
    md,
    mention,
    plain,
    section,
)

DISPUTE = "handoff_dispute"  # the digest's button on a rejection example
UPHOLD = "dispute_uphold"
REOPEN = "dispute_reopen"
DISPUTE_VIEW = "handoff_dispute_view"
DISPUTE_NOTE_BLOCK = DISPUTE_NOTE_ACTION = "dispute_note"


@dataclass(frozen=True)
class DisputeModel:
    dispute_id: int
    company: str
    lead_external_id: str
    rep_user_id: str | None
    rep_email: str
    reason_label: str
    action: str | None  # recycle | disqualify
    rep_note: str | None
    marketing_user_id: str
    marketing_note: str
    status: str = "open"
    decided_by: str | None = None


def _rep(model: DisputeModel) -> Mrkdwn:
    return mention(model.rep_user_id) if model.rep_user_id else md("{}", model.rep_email)


def dispute_modal(handoff_id: int, lead_label: str, reason_label: str) -> Block:
    blocks: list[Block] = [
        section(
            md(
                "Sales rejected *{}*: {}. Tell the rep's manager why it should be reopened.",
                lead_label,
                reason_label,
            )
        ),
        {
            "type": "input",
            "block_id": DISPUTE_NOTE_BLOCK,
            "label": plain("Why marketing disagrees"),
            "element": {
                "type": "plain_text_input",
                "action_id": DISPUTE_NOTE_ACTION,
                "multiline": True,
                "max_length": 3000,
            },
        },
    ]
    return {
        "type": "modal",
        "callback_id": DISPUTE_VIEW,
        "title": plain("Dispute rejection", 24),
        "submit": plain("Send to manager", 24),
        "close": plain("Cancel", 24),
        "private_metadata": str(handoff_id),
        "blocks": blocks,
    }


def _body(model: DisputeModel) -> list[Block]:
    where = "recycled to nurture" if model.action == "recycle" else "disqualified"
    rejection = md(
        "*{}* (lead {}) was rejected by {}: *{}* ({})",
        model.company,
        code(model.lead_external_id),
        _rep(model),
        model.reason_label,
        where,
    )
    if model.rep_note:
        rejection += md("\n> {}", model.rep_note)
    return [
        header("Marketing disputes a rejection"),
        section(rejection),
        section(
            md("{} (marketing) says:\n> {}", mention(model.marketing_user_id), model.marketing_note)
        ),
    ]


def request_blocks(model: DisputeModel) -> list[Block]:
    """The manager's DM: the lead, the rejection, marketing's note, and the choice."""
    value = str(model.dispute_id)
    blocks = _body(model)
    if model.status == "open":
        blocks.append(
            actions(
                button("Reopen", REOPEN, value, style="primary"),
                button("Uphold", UPHOLD, value),
                block_id="dispute",
            )
        )
        blocks.append(
            context(
                md(
                    "Reopen: back to {} with a fresh clock. Uphold: the rejection stands.",
                    _rep(model),
                )
            )
        )
    else:
        blocks.append(section(outcome_line(model)))
    return limit_blocks(blocks)


def request_text(model: DisputeModel) -> Mrkdwn:
    return md("Marketing disputes the rejection of {}", model.company)


def outcome_line(model: DisputeModel) -> Mrkdwn:
    who = mention(model.decided_by)
    if model.status == "reopened":
        return md(
            "↩️ *Reopened* by {}: the lead is back with {}, with a fresh clock.", who, _rep(model)
        )
    return md("⚖️ *Upheld* by {}: the rejection stands.", who)


def outcome_text(model: DisputeModel) -> Mrkdwn:
    """What marketing hears back."""
    return md("Your dispute of *{}* was decided. ", model.company) + outcome_line(model)
