"""The gateways' own example bodies, each naming the page it came from: the fake
acquirers answer with them (their values replaced by the order's), and
tests/unit/test_acquirer_examples.py feeds them to our clients as they are.

Halyk's come from its documentation (epayment.kz/docs). Kapital Bank's and Kaspi's QR
API's documents are given to merchants at certification, not published: their bodies
here are written from the public clients' parsers (named with each), the shapes their
code reads, and must be checked against the bank's document at certification
(docs/topups.md, "Certification").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    source: str  # the page (or the public client's file) the body comes from
    body: str


HALYK_DOCS = "https://epayment.kz/en-US/docs/"

# The OAuth host's answer to a token request (client credentials, and the payment token
# bound to an invoice alike).
HALYK_TOKEN = Example(HALYK_DOCS + "platezhnaya-stranica (Response)", """{
  "access_token": "Q2W9KX_LMT4RZ_P_8HFD2A",
  "expires_in": 7200,
  "refresh_token": "",
  "scope": "payment",
  "token_type": "Bearer"
}""")

# check-status of a paid invoice. Our copy of the page's example ends after
# "accountID"; the fields after it are completed, with empty values, from the field list
# of Sakhnovkrg/Epay src/DTO/Transaction.php (statusName "CHARGE": paid).
HALYK_STATUS = Example(HALYK_DOCS + "check-status-payment (Response Body JSON)", """{
  "resultCode": "100",
  "resultMessage": "SUCCESS",
  "transaction": {
    "id": "5d0c2f4e-9a1b-4c7e-8f3a-2b6d1e0a9c47",
    "createdDate": "2025-03-14T11:20:05.512377+05:00",
    "invoiceID": "000512345",
    "amount": 1200.50,
    "amountBonus": 0,
    "payoutAmount": 1188.50,
    "orgAmount": 1500.50,
    "approvalCode": "402917",
    "data": "",
    "currency": "KZT",
    "terminal": "98100017",
    "terminalID": "67e34d63-102f-4bd1-898e-370781d0074d",
    "accountID": "",
    "description": "",
    "language": "RU",
    "cardMask": "440563...5096",
    "cardType": "VISA",
    "issuer": "",
    "reference": "507311220415",
    "reason": "",
    "reasonCode": "00",
    "intReference": "",
    "secure": false,
    "secureDetails": "",
    "statusID": "",
    "statusName": "CHARGE",
    "name": "",
    "email": "",
    "phone": "",
    "cardID": "",
    "xlsRRN": "",
    "ip": "",
    "ipCountry": "",
    "ipCity": "",
    "ipRegion": "",
    "ipDistrict": "",
    "ipLatitude": 0,
    "ipLongitude": 0
  }
}""")

# check-status of an invoice Halyk has no transaction for (resultCode 102; the codes are
# those Sakhnovkrg/Epay's TransactionStatus names: 100 found, 101 rejected, 102 not
# found, 103 error, 104/106/109 the terminal, 107 in progress).
HALYK_STATUS_NOT_FOUND = Example(HALYK_DOCS + "check-status-payment (resultCode)", """{
  "resultCode": "102",
  "resultMessage": "NOT FOUND"
}""")

# A refusal of the API (refund, cancel): HTTP 400 with this body.
HALYK_ERROR = Example(HALYK_DOCS + "vozvrat-chastichnyi-vozvrat (Error, Http status 400)",
                      """{
  "code": 100,
  "message": ""
}""")

# The postLink after a successful payment: the page's fields (platezhnaya-stranica: the
# secret_hash "will be returned to Postlink"), as Sakhnovkrg/Epay's WebhookPayload reads
# them; failurePostLink carries "code": "error" and the reason.
HALYK_POSTLINK = Example(HALYK_DOCS + "platezhnaya-stranica (postLink)", """{
  "accountId": "",
  "amount": 1500.50,
  "approvalCode": "402917",
  "cardId": "",
  "cardMask": "440563...5096",
  "cardType": "VISA",
  "code": "ok",
  "currency": "KZT",
  "dateTime": "2025-03-14T11:20:05.512377+05:00",
  "description": "",
  "email": "",
  "id": "5d0c2f4e-9a1b-4c7e-8f3a-2b6d1e0a9c47",
  "invoiceId": "000512345",
  "ip": "",
  "ipCity": "",
  "ipCountry": "",
  "ipDistrict": "",
  "ipLatitude": 0,
  "ipLongitude": 0,
  "ipRegion": "",
  "issuer": "",
  "language": "RU",
  "name": "",
  "phone": "",
  "reason": "success",
  "reasonCode": 0,
  "reference": "507311220415",
  "secret_hash": "9c1e4b7a0d2f4e6a8b3c5d7e9f1a2b3c",
  "secure": "yes",
  "secureDetails": "",
  "terminal": "67e34d63-102f-4bd1-898e-370781d0074d"
}""")

_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
KAPITAL_PARSERS = ("arzuhuseyn/Kapital-Bank-Payment-Gateway kapital_gateway/base.py; "
                   "ampeco/omnipay-kapitalbank src/Message/*Response.php")

# CreateOrder's answer: the order, its session, the page (the customer goes to
# URL?ORDERID=..&SESSIONID=..).
KAPITAL_CREATED = Example(KAPITAL_PARSERS + " (CreateOrder)", _XML + """<TKKPG>
  <Response>
    <Operation>CreateOrder</Operation>
    <Status>00</Status>
    <Order>
      <OrderID>48151</OrderID>
      <SessionID>7F3A9C0D21E44B6F</SessionID>
      <URL>https://tstpg.kapitalbank.az/index.jsp</URL>
    </Order>
  </Response>
</TKKPG>""")

KAPITAL_STATUS = Example(KAPITAL_PARSERS + " (GetOrderStatus)", _XML + """<TKKPG>
  <Response>
    <Operation>GetOrderStatus</Operation>
    <Status>00</Status>
    <Order>
      <OrderID>48151</OrderID>
      <OrderStatus>APPROVED</OrderStatus>
    </Order>
  </Response>
</TKKPG>""")

# GetOrderInformation: arzuhuseyn's parser reads id, SessionID, OrderType, Orderstatus,
# Amount, Description, Fee, createDate, payDate; the refund's fields are TWPG's.
KAPITAL_INFORMATION = Example(KAPITAL_PARSERS + " (GetOrderInformation)", _XML + """<TKKPG>
  <Response>
    <Operation>GetOrderInformation</Operation>
    <Status>00</Status>
    <Order>
      <row>
        <id>48151</id>
        <SessionID>7F3A9C0D21E44B6F</SessionID>
        <createDate>2025-03-14 10:20:04</createDate>
        <payDate>2025-03-14 10:21:31</payDate>
        <Amount>1000</Amount>
        <Currency>944</Currency>
        <OrderType>Purchase</OrderType>
        <Orderstatus>APPROVED</Orderstatus>
        <Description>Wallet top-up tu-1</Description>
        <Fee>0</Fee>
        <RefundAmount>0</RefundAmount>
        <RefundCurrency>944</RefundCurrency>
      </row>
    </Order>
  </Response>
</TKKPG>""")

# Reverse's answer (ampeco's VoidResponse reads Response/Reversal/RespCode).
KAPITAL_REVERSED = Example(KAPITAL_PARSERS + " (Reverse)", _XML + """<TKKPG>
  <Response>
    <Operation>Reverse</Operation>
    <Status>00</Status>
    <Reversal>
      <RespCode>000</RespCode>
      <RespMessage>APPROVED</RespMessage>
    </Reversal>
  </Response>
</TKKPG>""")

# The browser back at ApproveURL: the form field xmlmsg (ampeco's CreateCardNotification
# reads Message/OrderID, SessionID, OrderStatus, ResponseCode, ResponseDescription).
KAPITAL_XMLMSG = Example(
    KAPITAL_PARSERS + " (xmlmsg)", _XML + """<Message date="14/03/2025 10:21:31">
  <Version>1.0</Version>
  <OrderID>48151</OrderID>
  <SessionID>7F3A9C0D21E44B6F</SessionID>
  <TransactionType>Purchase</TransactionType>
  <PurchaseAmount>1000</PurchaseAmount>
  <Currency>944</Currency>
  <ResponseCode>000</ResponseCode>
  <ResponseDescription>APPROVED</ResponseDescription>
  <OrderStatus>APPROVED</OrderStatus>
  <OrderDescription>Wallet top-up tu-1</OrderDescription>
</Message>""")

KASPI_PARSERS = ("RomanBronevik/kaspi-qr internal/domain/entities/*.go; "
                 "thedakeen/kaspi-api-wrapper internal/domain/kaspi.go")

KASPI_DEVICE = Example(KASPI_PARSERS + " (device/register)", """{
  "StatusCode": 0,
  "Message": "",
  "Data": {"DeviceToken": "2be4cc91-5895-48f8-8bc2-86c7bd419b3b"}
}""")

KASPI_LINK = Example(KASPI_PARSERS + " (qr/create-link)", """{
  "StatusCode": 0,
  "Message": "",
  "Data": {
    "PaymentLink": "https://pay.kaspi.kz/pay/5bx1c0qz",
    "ExpireDate": "2025-03-14T10:50:30.123+05:00",
    "PaymentId": 90210,
    "PaymentMethods": ["Gold", "Red", "Loan"],
    "PaymentBehaviorOptions": {
      "StatusPollingInterval": 5,
      "LinkActivationWaitTimeout": 180,
      "PaymentConfirmationTimeout": 65
    }
  }
}""")

KASPI_STATUS = Example(KASPI_PARSERS + " (payment/status)", """{
  "StatusCode": 0,
  "Message": "",
  "Data": {"Status": "Processed"}
}""")

# An error: HTTP 200, StatusCode other than 0 (-1501: the device is not found).
KASPI_ERROR = Example(KASPI_PARSERS + " (StatusCode, const.go)", """{
  "StatusCode": -1501,
  "Message": "Device not found"
}""")
