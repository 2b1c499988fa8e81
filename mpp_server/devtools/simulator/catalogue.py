"""The simulator's merchants and its one Custom service (regulation §4.1's parking example).

The service has one parameter of each kind a client must handle: a free-text field
(`value` empty), a drop-down (`options`) and a prefilled value to pass back unchanged.
Names and labels follow X-Locale (§4.1: "name: the value's description in the locale's
language").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpp_server.money import TIYN_PER_TENGE

LOCALE_RU = "ru-RU"
LOCALE_KK = "kk-KZ"
LOCALES = frozenset({LOCALE_RU, LOCALE_KK})


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    mcc: str
    author_type: str = "POS"

    def wire(self) -> dict[str, str]:
        return {"merchantId": self.merchant_id, "merchantName": self.name,
                "merchantMCC": self.mcc, "authorType": self.author_type}


COFFEE_BAR = Merchant(merchant_id="123456789", name="Coffee Bar", mcc="5812")
PARKING = Merchant(merchant_id="2862", name="Парковка Test", mcc="5732")


@dataclass(frozen=True, slots=True)
class Option:
    key: str
    labels: dict[str, str]
    price_tiyn: int
    descriptions: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Parameter:
    param_id: int
    names: dict[str, str]
    prefilled: str | None = None
    options: tuple[Option, ...] = ()

    def wire(self, locale: str) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.param_id, "name": self.names[locale]}
        if self.options:
            item["options"] = [_option_wire(option, locale) for option in self.options]
        else:
            item["value"] = self.prefilled or ""
        return item

    def accepts(self, value: str) -> bool:
        if self.prefilled is not None:
            return value == self.prefilled
        if self.options:
            return any(option.key == value for option in self.options)
        return value.strip() != ""


def _option_wire(option: Option, locale: str) -> dict[str, str]:
    item = {"key": option.key, "label": option.labels[locale]}
    if option.descriptions:
        item["description"] = option.descriptions[locale]
    return item


SERVICE_ID = 2862
SERVICE_NAME = "Парковка"
PLATE = Parameter(3932, {LOCALE_RU: "Госномер", LOCALE_KK: "Мемлекеттік нөмір"})
TARIFF = Parameter(3933, {LOCALE_RU: "Тариф", LOCALE_KK: "Тариф"}, options=(
    Option("1h", {LOCALE_RU: "1 час", LOCALE_KK: "1 сағат"}, 500 * TIYN_PER_TENGE),
    Option("day", {LOCALE_RU: "Сутки", LOCALE_KK: "Тәулік"}, 3000 * TIYN_PER_TENGE,
           {LOCALE_RU: "24 часа", LOCALE_KK: "24 сағат"}),
))
CITY = Parameter(3934, {LOCALE_RU: "Город", LOCALE_KK: "Қала"}, prefilled="ALMATY")
PARAMETERS: dict[int, Parameter] = {p.param_id: p for p in (PLATE, TARIFF, CITY)}


def payment_data(locale: str) -> dict[str, Any]:
    return {"serviceId": SERVICE_ID, "serviceName": SERVICE_NAME,
            "parameters": [p.wire(locale) for p in PARAMETERS.values()]}


def tariff_price_tiyn(values: dict[int, str]) -> int:
    return next(o.price_tiyn for o in TARIFF.options if o.key == values[TARIFF.param_id])
