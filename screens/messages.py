"""What the core's workers hand back to the screens: one Textual message per result kind.

A worker runs a blocking core call in a thread (`run_core`); its result comes back as one of
these, typed, to the screen or the app that handles it (`on_plan_ready`, `on_cycle_done`…),
never as an untyped callback argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from console.flows.cycle import CycleSummary
    from console.plan import Plan
    from console.post import PostProgress


class PlanReady(Message):
    """The review plan is ready (Engine.plan_for_review): the Dry run shows it."""

    bubble = False  # for the screen that asked, not the app

    def __init__(self, plan: Plan, generation: int | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.generation = generation  # the Dry run's plan generation it was asked for


class PostAdvanced(Message):
    """One voucher of a reviewed plan landed (or failed) while posting goes on.

    Posted from the posting thread without waiting for the screen: a blocking
    call_from_thread per voucher paced posting by redraws (about 7x slower)."""

    bubble = False

    def __init__(self, event: PostProgress) -> None:
        super().__init__()
        self.event = event


class PlanPosted(Message):
    """The reviewed plan was posted (Engine.post_reviewed)."""

    bubble = False  # for the screen that asked, not the app

    def __init__(self, summary: CycleSummary) -> None:
        super().__init__()
        self.summary = summary


class ChangeConfirmed(Message):
    """A report changed after posting was confirmed: reversed, and re-posted when changed
    (Engine.confirm_change)."""

    bubble = False  # for the screen that asked, not the app

    def __init__(self, report_id: str, summary: CycleSummary) -> None:
        super().__init__()
        self.report_id = report_id
        self.summary = summary


class CycleDone(Message):
    """A sync or a replay finished (Engine.run_cycle, Engine.replay): the app says what it
    did and every screen reloads."""

    def __init__(self, summary: CycleSummary) -> None:
        super().__init__()
        self.summary = summary


class CycleFailed(Message):
    """A sync or a replay raised: the app says why and every screen reloads."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
