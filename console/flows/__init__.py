"""The workflows: each takes a session (console/session.py) and runs the stages in order.

- cycle: the sync cycle and the operator's actions on it (the Engine facade)
- reversals: accrual reversals and changes after posting
- card_accrual: the period's unreported card spend, accrued and reversed
- close: the period close and its tie-out
- adopt: vouchers IFS already holds, linked to their reports

Nothing below this package imports it; commands and screens call it.
"""
