"""The operators' console (issue 24; docs/operations.md "The operators' console"): a
back office on ADMIN_LISTEN for the wallet's operations staff.

- app.py: the application and its routes; web.py: sessions, CSRF, roles, headers, errors
- login_pages.py, pages.py, action_pages.py: the handlers; templates/, static/
- operators.py (accounts, Argon2id), sessions.py (server-side, in PostgreSQL), signin.py
- actions.py: what an operator does, each one transaction with its journal row
- audit_cli.py, operators_cli.py: the commands; the journal itself is mpp_server/audit.py
  (the command line writes it too: operators, reconcile ack)
- queries.py, overview.py, search.py: what the pages read
"""
