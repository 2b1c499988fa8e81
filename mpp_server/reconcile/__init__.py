"""Reconciliation against Kaspi's daily and monthly registries (regulation §5).

registry.py reads the file, matching.py compares it with our books, store.py runs it
in one transaction and keeps the result, cli.py is `python -m mpp_server reconcile`.
See docs/reconciliation.md.
"""
