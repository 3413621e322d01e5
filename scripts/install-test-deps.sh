#!/usr/bin/env bash
# Installs the system programs the tests talk to, when they are missing and we are root.
set -euo pipefail

need=()
command -v git >/dev/null || need+=(git)
command -v git-lfs >/dev/null || need+=(git-lfs)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v chromium >/dev/null || need+=(chromium)
command -v curl >/dev/null || need+=(curl)
command -v npm >/dev/null || need+=(nodejs npm)
# CI executors: Podman (Docker-compatible API) with runc, bubblewrap, and busybox for test images
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v bwrap >/dev/null || need+=(bubblewrap)
[ -x /bin/busybox ] || need+=(busybox-static)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (install them, or run make test as root)" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Azurite (npm), the Azure Blob emulator the storage tests start; kept inside the checkout.
repo="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v azurite-blob >/dev/null && [ ! -x "$repo/.cache/azurite/node_modules/.bin/azurite-blob" ]; then
  echo "installing Azurite into $repo/.cache/azurite"
  npm install --silent --no-audit --no-fund --prefix "$repo/.cache/azurite" azurite@3 >/dev/null
fi

# oidc-provider (npm), the certified OpenID provider the SSO tests run on loopback.
sh "$repo/tests/peers/install-oidc-provider.sh"
