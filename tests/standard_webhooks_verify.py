"""Verifies recorded webhook deliveries with the Standard Webhooks reference
library (PyPI `standardwebhooks`), as a storefront's receiver would.

Usage: standard_webhooks_verify.py SECRET DELIVERIES.json
DELIVERIES.json is a list of {"headers": {name: value}, "body": "<raw body>"}.
Prints the number verified; exits non-zero (with the library's error) on the first
delivery it rejects.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

secret, path = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    deliveries = json.load(f)
receiver = Webhook(secret)
for d in deliveries:
    receiver.verify(d["body"], d["headers"])
print(len(deliveries))
