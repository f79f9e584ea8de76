#!/usr/bin/env bash
# The README's picture of the dashboard: the browser test of a 10-node simulation saves its
# screenshot, shrunk, to docs/img/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGENODE_DASHBOARD_SCREENSHOT="$PWD/docs/img/dashboard.png" \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/dashboard/test_browser.py -k simulation
ls -l docs/img/dashboard.png
