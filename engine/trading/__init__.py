"""Trading: the lifecycle of one entry ("trade"), position management and the venue reconciler.

A decision's Intent becomes a Trade in a :class:`~.lifecycle.TradeBook` (the single source of truth of
what we believe we hold), every order of that trade carries a ``client_order_id`` derived from the intent
(:mod:`.ids`), so a retried or replayed intent maps onto the same orders instead of new ones. Position
management (:mod:`.management`) and reconciliation (:mod:`.reconcile`) are pure: they return what to do and
the runtime does it. :mod:`.records` persists a book for crash recovery. Rules: docs/strategy.md.
"""
