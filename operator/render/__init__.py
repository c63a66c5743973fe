"""Pure renderers: parent objects in, desired child manifests out (plain dicts), no I/O, no clock.

Why pure: renderers hold most of the operator's logic, so they get fast, exhaustive unit tests with no
cluster, and the reconcilers stay thin (read, render, apply, write status).
"""
