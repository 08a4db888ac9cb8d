"""Who may see or do what, by Slack user: one rule for the slash command, the App Home
and decisions.

A lead's story carries its contact's email, its owners and the reps' rejection
notes, and lead ids are easy to guess. So a lead is shown only to the people it
concerns: whoever owns or owned it, their managers (from the definition), and the
definition's owners. Everyone else gets the same refusal whether or not the lead
exists. The week's numbers are for the people the definition names (owners,
managers, routing reps) and anyone who has owned a handoff.
"""

from __future__ import annotations

import logging
from functools import cached_property

from slack_sdk.errors import SlackApiError
from sqlalchemy import or_, select

from bot.definition import Definition
from bot.handoffs import held_pool
from bot.routing import pool_managers
from bot.services import Services
from store.models import Handoff, Lead

logger = logging.getLogger(__name__)

LEAD_REFUSED = (
    "I can't show you that lead. A lead's story is open to the reps who have owned it, "
    "their manager and the owners of the definition."
)
NUMBERS_REFUSED = (
    "The handoff numbers are for the reps, managers and owners the definition names, "
    "and anyone who has worked a handoff."
)


class Viewer:
    """A Slack user, and their email once someone needs it (a directory lookup)."""

    def __init__(self, services: Services, user_id: str) -> None:
        self.services = services
        self.user_id = user_id

    @cached_property
    def email(self) -> str | None:
        try:
            email = self.services.directory.email_of(self.user_id)
        except (SlackApiError, OSError):
            # Slack is unreachable: the viewer is known by user id only, which is
            # enough for a rep's own leads and refuses the rest.
            logger.exception("could not look up the email of %s", self.user_id)
            return None
        return email.lower() if email else None


def owns(viewer: Viewer, owner_email: str, owner_user_id: str | None) -> bool:
    if owner_user_id and viewer.user_id == owner_user_id:
        return True
    return viewer.email is not None and viewer.email == owner_email.lower()


def manages(definition: Definition, viewer: Viewer, owner_email: str) -> bool:
    manager = definition.manager_of(owner_email)
    return manager is not None and viewer.email == manager


def team_of(definition: Definition, viewer: Viewer) -> list[str]:
    """The reps this viewer manages (per the definition): whose handoffs they may see and
    decide on, as on the App Home's team view."""
    if viewer.email is None:
        return []
    return [rep for rep, manager in definition.handoff.managers.items() if manager == viewer.email]


def may_decide(definition: Definition, viewer: Viewer, handoff: Handoff) -> bool:
    """The handoff's owner or the owner's manager (for a lead held at the daily caps:
    any manager of its pool)."""
    return (
        owns(viewer, handoff.owner_email, handoff.owner_user_id)
        or manages(definition, viewer, handoff.owner_email)
        or _manages_held_pool(definition, viewer, handoff)
    )


def _manages_held_pool(definition: Definition, viewer: Viewer, handoff: Handoff) -> bool:
    pool = held_pool(handoff.route_key)
    if pool is None:
        return False
    for rule in definition.handoff.routing:
        if rule.key == pool:
            return viewer.email is not None and viewer.email in pool_managers(definition, rule)
    return False


def _owns_definition(definition: Definition, viewer: Viewer) -> bool:
    owners = {definition.owners.marketing.lower(), definition.owners.sales.lower()}
    return viewer.email in owners


def may_see_lead(services: Services, viewer: Viewer, external_id: str) -> bool:
    """False for a lead that does not exist, as for one the viewer may not see."""
    definition = services.definition
    with services.db.session() as session:
        exists = session.scalar(select(Lead.id).where(Lead.external_id == external_id))
        handoffs = session.scalars(
            select(Handoff)
            .join(Lead, Lead.id == Handoff.lead_id)
            .where(Lead.external_id == external_id)
        ).all()
    if exists is None:
        return False
    if _owns_definition(definition, viewer):
        return True
    # Whoever may (or might have) decided on one of its handoffs: owners, their managers,
    # and the managers of the pool a held lead waits in.
    return any(may_decide(definition, viewer, handoff) for handoff in handoffs)


def may_see_numbers(services: Services, viewer: Viewer) -> bool:
    definition = services.definition
    named = {*definition.handoff.managers, *definition.handoff.managers.values()}
    for rule in definition.handoff.routing:
        named.update(rule.reps)
    if viewer.email is not None and (viewer.email in named or _owns_definition(definition, viewer)):
        return True
    has_owned = Handoff.owner_user_id == viewer.user_id
    if viewer.email is not None:
        has_owned = or_(has_owned, Handoff.owner_email == viewer.email)
    with services.db.session() as session:
        return session.scalar(select(Handoff.id).where(has_owned).limit(1)) is not None
