"""The sandbox Fireblocks: a Fireblocks-compatible HTTP surface (the API subset of
docs/fireblocks-wire.md) served under /sandbox/fireblocks by the same process as the sandbox
Stellar network, over its in-memory ledger.

It holds one vault account whose Stellar account lives on the sandbox ledger. Transfers
created with POST /v1/transactions walk Fireblocks' statuses and really pay on the ledger;
payments into the vault become incoming Fireblocks transactions; every status change is sent
as a signed webhook (both signature schemes). Requests are authenticated with Fireblocks' JWT
scheme against registered API keys, and faults can be injected through developer routes, so
anchorpay's real Fireblocks client and worker can be tested end to end over real HTTP.

Only constants live here so that importing them pulls in nothing heavy; the service is
`anchorpay.sandbox.fireblocks.service.FireblocksSandbox`.
"""

from __future__ import annotations

# Every key below is fixed and sandbox-only (like SANDBOX_DISTRIBUTION_SECRET): none of them is
# known to any real Fireblocks workspace or Stellar network, so printing them is safe and lets
# a client in another process sign for the sandbox.

SANDBOX_FIREBLOCKS_API_KEY = "120adca0-fdaa-466c-8a0c-ec0c290eb235"

# The API user's RSA private key (PKCS#8 PEM): the client signs its request JWTs with it; the
# sandbox registers its public key for SANDBOX_FIREBLOCKS_API_KEY.
SANDBOX_FIREBLOCKS_API_SECRET_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCmvEooEPpA0Djx
vSVVjdH0chiwlNS0MtTWAiaik0K5s41eF5/QA9OP3hiUE5JdvJ1iFtNrDghpK6P9
osEgOd0VViN4bdvpDsRviz5pYUtlqycGfnQwA4IuFYqDEGb7A+bfGEgpwxaW5FPD
2rXvvtLjvoHUz79WQ2jJ+dF1XYI0GJSO/+MEltS5zEtE9qrIIUKK4qFq5curTM/w
/GXZZ64Abhrpdxwhi73aQW31nL80eT938LY17FWpoX5wOu0KnFnRQYuC8SGjAnQF
QAM+GpiuBvHHkIAnaX2Hi2J8iSKZcIsqZFGwtf0Pp/kYyB77bEPwqfGw6JF1GzMs
LH4XI8EdAgMBAAECggEAAfE6zxiAAVUar4nBYlFQLRPHTENNOfahggctRM4XWr/p
zDsRdOfpzJ9ygRXpZhSN2KzSR0Gn+XxAki6dGDUKABFsX1s2JZL22OdT2R6XiA0L
zLenoKmO+inOuSxt1FNksVDLqA5MPBj9OtB2ke4SwsgBFTyITmUJKY2jmYGcrYhe
mn1PpIKrlNEIBWrvEPn+sRbu+aQb2dLqS5mdvJ9hQ+64ZTqvBSqjt/Hl7G2dsOaz
iVjZyqBhZfOuhGLDQVKc9rJn2ALHILgABhPehmREyzWXFmlUz67gr+lQIuShW+DW
lS9POdU12uK0QheCfX2ZH73uAv02J15N5Lmshv8RcQKBgQDR5W76cjGfhQMDcIgQ
9vJ5Vw9jHjszjYDDTM4XKxB2r//9nJ4QGZ2ieAQKRuKBgY6MDMkm+jo8TsrJH6TV
njfkZEw5leFUZot0UfzD3ANqoCtEIRyo9wUJYXXxUTfa0HoNoUFCe0w7PwOeq06+
O/AVynVWehgVZ5zyZCJwzQdGGQKBgQDLW+h2bKKy+g6UUgkmqdcwtdRiqr7xdBVT
tINi6GQ2gllQI221hLIm8Z7ibxnyIwUkrsAOR3ucSTUXsygT50iPdQo+kH3FYH+0
eQ+LMnwM2D7Gg09nKpRH5cfJ6+Qvo4mpSaioHi3FDqMpNpuxB0ETVmeylfYuKWh8
0G3p1gSLpQKBgQCrPU40HtPjO6YAuV8Y0A9z9RYFnFVaMrh5HQEKH8UXv3DOnGbL
5coYEWfiZoBGfcco9QlqtjyqlPGV8i4NZT5eI4GYfXHO5LYjGPxpYeabp76En6r9
IkJGq++IB+XUq77XvdY7AdJoh3lRipr8UnQFox3lhkh9tgFyM0Vx16N2iQKBgA9I
N972aP+kNQZGZ/Ok3cwGThCgHjtM6vFgZmM/bZB/GTEhiHQUpcKxc6w2hy+gHBnW
nA42pv5mrfu69e8Q+W32cK+k8h6sEszAMD/YqmPYuFb4tTXeiEgi53GwLXS7CHRV
WbxQkEX3xKErPmX+UpCedKqCBH8Rk42VqDzjXXIVAoGAWSy5Bs2dDbiZdpPjYJcN
sc4gf/sk2wc4g90CTy3dcFcnEAdSnBkmO+k98Tlg/VJcD9Hk6wKQylPEwU+wz3x9
knlLOA9hoVuuljz2vKFrWnJTYB9Smh7q+SY4pH/x2UdrYRTmvBIfqtLCtGHewLep
uVCCyClZ/YH+8MZ9MdZwnJk=
-----END PRIVATE KEY-----
"""

# The key pair the sandbox signs its webhooks with (both schemes); the public key is also
# served as a JWKS at /sandbox/fireblocks/.well-known/jwks.json under this key id.
SANDBOX_FIREBLOCKS_WEBHOOK_KID = "anchorpay-sandbox-webhook-1"
SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCdbqpVOpE3L/cB
nZSeQvgEL+zfGlVyD7+UUKGk49MlPssOrNsYukUfd+pM4hQYFEHl40OuVILJIA7K
qHOhdvz0u0o5QkHIFmE1MbAPOBkvqPV5U5x9z52xZ2EKrrvLkuyWkKs4wa1pEb2z
b5vP3mIf+6/IHtrWeEs0UH4k5btnjF6PbwhmV7jiULe/M87J7HNzgoDSFQ9iLDLf
hLaGvJG9E69UtDRuszWJ9lHcq5GO75KFulIknO74LPUb9PrHw1RwFwKsv4IGAJOR
E8J9WkxTbCHPrOdydZg0LFTfGWBUbtXyVHKu/TQJJMxA/7IsrkZNbLxXQ1cWqeNW
+R7tN12DAgMBAAECggEABClrRlKEiT1y3a+RQLfLf6zWqbU0Ag5phZ22EDpXmBn3
Wz11k0tFTYYpgvvNBS/v6AhgfyjLxk5bJb9bQy72k++pkCbwvz3cNwBHw7c7bzeb
uafcsLS+2fQ+K/6fh0ushnRvmlIAaBEofyhZqZ6a4HaSWIt8RIQslMb19rq+AAg6
xtbi7Huage4hJkIzLpKwkmCKtcJrLa7fuibGfPGgaLLofPkpLHKaf3RQ5usoZpXC
yVzXNwlJUFubGSCnhLQ4/vMsw4VP99mrDlBZJ9Fu3kaGcx6/7+ALt3uVTbh5fwUH
8tJhjuo0kGjJsy2dA4CrpRfa2FfAHBmFaq0TGQ0byQKBgQDaYBlhJ0GyYimtWZiY
TJb6mTomAgLaXAgnQnKpBXTDV3JFwiphuYRi/8toTUt9SWJ/mt+hQzb1ceau1uJ2
s6pEDcTlAPnXhTqPl9SlbOAW5qREwJaRxk+1zB9qYTQxzFU9QelojNnPgDKPEGrk
udXU5SjN5vly9lyKJKmgbSv0iwKBgQC4jotApOQVMrRKZRyDur+eX+r0lwP1BwUH
QDNtOSewgC5Z2mc5iPXxC1cdY+yOERI6RzADRtZx20ATLt7Z4EVv9iH8w8W91gNG
/KjE0zdkYgJ+Bo+2vAj7q3XJIFHnT4CqhDAscdFQM1bZh0Wlm/hpdoZJSKyHuOwe
IsvxvKvB6QKBgCKVc4+CUxI4H5eXh+Yeww5e8+mPCfqg9p2ZFWWVOp+xGqTXkjS1
17SCBCm5jAoEdDf3RBFa/royVrE70NOxsnZio9sMo4SxUcvp5MBqFLcrwbotserW
OEt3T0ZerJByZtFzvc5T+C63g8pKdFNS5v13aVXqjXjacV9jXQXOJFbvAoGAYyjT
UOxHT8xqaf5hj7Vq9yD6EGiDS8d1wCuSdgDbfk2gmc5q39LisZwyNixWEQ7DCGTv
OxN4bLwsdSIdwlppdHp+UFyvhgvSvvVJiFcjz9+JD0VfOgNVoELDiki/ONTSgMt9
RqPwnnK3GzE/Dnf6xE9WX1GYwWNuGdMAWOXSMuECgYEAx6WRekPQy7GIFIBO3DJb
0kBjqGvIU6/MaO2GF4stmdCfTjOdH4W/VfP33kph9xwVRFS7jr1rNVKxHh2Q/TMh
wrPB3JRJ6d60+1sNoMQYqyLBIr7GOAVRQh5Tay0jhnWwUmf1cD0dAm0HPji13SlU
zBflb+tHdoULZVPDRzpF4GA=
-----END PRIVATE KEY-----
"""
SANDBOX_FIREBLOCKS_WEBHOOK_PUBLIC_PEM = """\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnW6qVTqRNy/3AZ2UnkL4
BC/s3xpVcg+/lFChpOPTJT7LDqzbGLpFH3fqTOIUGBRB5eNDrlSCySAOyqhzoXb8
9LtKOUJByBZhNTGwDzgZL6j1eVOcfc+dsWdhCq67y5LslpCrOMGtaRG9s2+bz95i
H/uvyB7a1nhLNFB+JOW7Z4xej28IZle44lC3vzPOyexzc4KA0hUPYiwy34S2hryR
vROvVLQ0brM1ifZR3KuRju+ShbpSJJzu+Cz1G/T6x8NUcBcCrL+CBgCTkRPCfVpM
U2whz6zncnWYNCxU3xlgVG7V8lRyrv00CSTMQP+yLK5GTWy8V0NXFqnjVvke7Tdd
gwIDAQAB
-----END PUBLIC KEY-----
"""

# The one vault account and the Stellar account that holds its funds on the sandbox ledger.
SANDBOX_FIREBLOCKS_VAULT_ID = "0"
SANDBOX_FIREBLOCKS_VAULT_SECRET = "SAZQL3IH2UPJQHANDOLOIUZB5M4ESHKUIVSGXUC6UNYBRC64O5RWFORF"
SANDBOX_FIREBLOCKS_VAULT_ACCOUNT = "GDLWWSIIRES6OM2MTRMBVNAT43B7SLL67YKCJKNJG6XLKR3CGW5INKWI"

__all__ = [
    "SANDBOX_FIREBLOCKS_API_KEY",
    "SANDBOX_FIREBLOCKS_API_SECRET_PEM",
    "SANDBOX_FIREBLOCKS_VAULT_ACCOUNT",
    "SANDBOX_FIREBLOCKS_VAULT_ID",
    "SANDBOX_FIREBLOCKS_VAULT_SECRET",
    "SANDBOX_FIREBLOCKS_WEBHOOK_KID",
    "SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM",
    "SANDBOX_FIREBLOCKS_WEBHOOK_PUBLIC_PEM",
]
