"""Pure status computation: a parent object and its observed children in, the status patch out.

Why pure and separate from the reconcilers: the phase and condition rules are the part users read
(``kubectl get``, ``kubectl wait``, alerts), so they get exhaustive unit tests over every child status, with
the clock passed in (``now``) so that a second pass over unchanged inputs yields an identical patch.
"""
