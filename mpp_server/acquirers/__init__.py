"""Our clients to the card acquirers (top-ups, docs/topups.md): Halyk ePay, Kapital
Bank's TKKPG gateway, Kaspi e-commerce. Each speaks its acquirer's wire format and
answers in the shared terms of base.py; the domain (domain/topups.py) never sees a wire
format."""
