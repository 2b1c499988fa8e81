"""The operators' console (issue 24; docs/operations.md "The operators' console"): a
back office on ADMIN_LISTEN for the wallet's operations staff.

- app.py: the application and its routes; web.py: sessions, CSRF, roles, headers, errors
- login_pages.py, pages.py, action_pages.py: the handlers; templates/, static/
- operators.py (accounts, Argon2id), sessions.py (server-side, in PostgreSQL), signin.py
- actions.py: what an operator does, each one transaction with its journal row
- journal.py: the hash-chained audit journal; audit_cli.py, operators_cli.py: commands
- queries.py, overview.py, search.py: what the pages read
"""
