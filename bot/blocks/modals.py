"""The modals a card's buttons open: reject with a reason, reassign, snooze."""

from __future__ import annotations

from bot.blocks.common import (
    Block,
    Mrkdwn,
    context,
    md,
    mention,
    option,
    plain,
    section,
)
from bot.definition import Definition, reason_choice

REJECT_VIEW = "handoff_reject_view"
REASSIGN_VIEW = "handoff_reassign_view"
SNOOZE_VIEW = "handoff_snooze_view"
LENGTH_BLOCK = LENGTH_ACTION = "length"
WHY_BLOCK = WHY_ACTION = "why"
REASON_BLOCK = REASON_ACTION = "reason"
NOTE_BLOCK = NOTE_ACTION = "note"
ASSIGNEE_BLOCK = ASSIGNEE_ACTION = "assignee"

_GROUPS = (("fit", "Fit: the account"), ("commercial", "Commercial: the deal"), ("other", "Other"))


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[Block]) -> Block:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, 24),
        "submit": plain(submit, 24),
        "close": plain("Cancel", 24),
        "private_metadata": metadata,
        "blocks": blocks[:100],
    }


def reject_modal(definition: Definition, handoff_id: int, lead_label: str) -> Block:
    """Reasons grouped by what they point at, each saying where the lead goes."""
    groups = []
    for group, group_label in _GROUPS:
        options = [
            option(reason_choice(reason.label, reason.action), reason.id)
            for reason in definition.reasons
            if definition.points_at(reason) == group
        ]
        if options:
            groups.append({"label": plain(group_label, 75), "options": options[:100]})
    notes_required = [r.label for r in definition.reasons if r.note_required]
    hint = "Marketing reads this in the weekly digest."
    if notes_required:
        hint += " Required for: " + ", ".join(notes_required) + "."
    blocks: list[Block] = [
        section(md("Why is *{}* not a lead sales will work?", lead_label)),
        {
            "type": "input",
            "block_id": REASON_BLOCK,
            "label": plain("Reason"),
            "element": {
                "type": "static_select",
                "action_id": REASON_ACTION,
                "placeholder": plain("Pick the reason that fits best"),
                "option_groups": groups,
            },
        },
        {
            "type": "input",
            "block_id": NOTE_BLOCK,
            "optional": True,
            "label": plain("Note for marketing"),
            "hint": plain(hint, 2000),
            "element": {
                "type": "plain_text_input",
                "action_id": NOTE_ACTION,
                "multiline": True,
                "max_length": 3000,
            },
        },
        context(
            Mrkdwn(
                "*back to nurture*: marketing keeps working it. *disqualified*: closed for good."
            )
        ),
    ]
    return _modal(REJECT_VIEW, "Reject lead", "Reject", str(handoff_id), blocks)


def reassign_modal(handoff_id: int, lead_label: str, owner_user_id: str | None) -> Block:
    owner = md(" (now with {})", mention(owner_user_id)) if owner_user_id else ""
    blocks: list[Block] = [
        section(
            md("Who should take *{}*{}? They get the card and a fresh clock.", lead_label, owner)
        ),
        {
            "type": "input",
            "block_id": ASSIGNEE_BLOCK,
            "label": plain("New owner"),
            "element": {
                "type": "users_select",
                "action_id": ASSIGNEE_ACTION,
                "placeholder": plain("Pick a rep"),
            },
        },
    ]
    return _modal(REASSIGN_VIEW, "Reassign lead", "Reassign", str(handoff_id), blocks)


def snooze_modal(handoff_id: int, lead_label: str, lengths: list[tuple[str, str]]) -> Block:
    """How long (`lengths`: (value, label), up to handoff.sla.snooze_max) and why."""
    blocks: list[Block] = [
        section(
            md(
                "Pause the response clock on *{}*: reminders and the escalation move by "
                "the time snoozed.",
                lead_label,
            )
        ),
        {
            "type": "input",
            "block_id": LENGTH_BLOCK,
            "label": plain("Snooze for"),
            "element": {
                "type": "static_select",
                "action_id": LENGTH_ACTION,
                "placeholder": plain("Business time"),
                "options": [option(label, value) for value, label in lengths][:100],
            },
        },
        {
            "type": "input",
            "block_id": WHY_BLOCK,
            "label": plain("Why"),
            "hint": plain("Shown on the card and to your manager."),
            "element": {
                "type": "plain_text_input",
                "action_id": WHY_ACTION,
                "max_length": 500,
            },
        },
    ]
    return _modal(SNOOZE_VIEW, "Snooze lead", "Snooze", str(handoff_id), blocks)
