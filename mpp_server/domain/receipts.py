"""Kaspi's receipt links as the customer is shown them (the payment's, a refund's: in
the API, the event feed and the webhooks)."""

from __future__ import annotations

KAZAKH = "kk-KZ"


def receipt_in_locale(link: str | None, locale: str | None) -> str | None:
    """The receipt in Kazakh when the payment was made in kk-KZ: Kaspi's link with
    `&locale=kk` (regulation §4.3); as Kaspi gave it otherwise."""
    if link and locale == KAZAKH and "locale=kk" not in link:
        return link + "&locale=kk"
    return link
