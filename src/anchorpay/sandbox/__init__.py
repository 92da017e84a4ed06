"""The sandbox Stellar network: an in-memory ledger that really checks envelopes, served with
Horizon's JSON shapes, plus developer routes and fault injection for tests.

Only constants live here so that importing them pulls in nothing heavy; the network itself
is `anchorpay.sandbox.app.Sandbox`.
"""

from __future__ import annotations

# A fixed, sandbox-only key: it exists on no real network, so printing it is safe and lets a
# worker in another process sign for the sandbox's distribution account.
SANDBOX_DISTRIBUTION_SECRET = "SBP6AFPJM3PKTHBSOM3IFV5TO2PXJ5RDMUSXV5ZWBQ3YIDUBUZKGVV44"
SANDBOX_DISTRIBUTION_ACCOUNT = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
SANDBOX_NETWORK_PASSPHRASE = "anchorpay sandbox ; 2026"

__all__ = [
    "SANDBOX_DISTRIBUTION_ACCOUNT",
    "SANDBOX_DISTRIBUTION_SECRET",
    "SANDBOX_NETWORK_PASSPHRASE",
]
