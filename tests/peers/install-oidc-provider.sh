#!/bin/sh
# Install panva's oidc-provider (a certified OpenID Provider) for the sign-in tests.
# Idempotent: does nothing when the pinned major version is already installed.
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="$root/.cache/oidc-provider"
if [ -f "$prefix/node_modules/oidc-provider/package.json" ] \
  && node -e 'process.exit(require(process.argv[1]).version.startsWith("8.") ? 0 : 1)' \
     "$prefix/node_modules/oidc-provider/package.json"; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm is required (apt-get install -y nodejs npm)" >&2; exit 1; }
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error oidc-provider@8
