"""The default configuration, installed as `anchorpay.defaults` (pyproject's package-dir) so
that the wheel carries it: `anchorpay` run where there is no ./config reads these files."""
