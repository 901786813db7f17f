"""Checks Swagger UI as a person sees it: the DOM that headless Chromium
rendered from /docs must list every operation of the OpenAPI document and
offer the Authorize button for bearer tokens.

Usage: check-swagger-ui.py DOM.html openapi.json
"""
import json
import re
import sys

dom = open(sys.argv[1], encoding="utf-8").read()
doc = json.load(open(sys.argv[2], encoding="utf-8"))

shown = set(
    (method.lower(), path)
    for method, path in re.findall(
        r'<span class="opblock-summary-method">(\w+)</span>.*?data-path="([^"]+)"', dom
    )
)
documented = set(
    (method, path)
    for path, item in doc["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)
problems = []
for method, path in sorted(documented - shown):
    problems.append(f"not listed in Swagger UI: {method.upper()} {path}")
if "btn authorize" not in dom:
    problems.append("no Authorize button (bearerAuth) in Swagger UI")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"Swagger UI lists all {len(documented)} operations and offers Authorize")
