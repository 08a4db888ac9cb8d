"""The two modals a decision can need: reject with a reason, and reassign."""

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
