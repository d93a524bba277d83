#!/usr/bin/env bash
# Install egress-guard on this Debian/Ubuntu host: the kernel tools it drives, its Node.js
# dependencies, a build, and /usr/local/bin/egress-guard. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs packages and /usr/local/bin/egress-guard): sudo bash install.sh" >&2
  exit 1
fi

pkgs=(iptables ipset nftables iproute2 ca-certificates)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v node >/dev/null 2>&1; then
  echo "install.sh: Node.js 20 or newer is required (apt-get install nodejs on Debian 13 / Ubuntu 24.04, or NodeSource for older releases)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "install.sh: Node.js $(node --version) is too old; egress-guard needs 20 or newer" >&2
  exit 1
fi

echo "install.sh: npm ci"
npm ci --no-fund --no-audit >/dev/null
echo "install.sh: building"
npm run -s build
chmod 0755 dist/cli.js
ln -sf "$here/dist/cli.js" /usr/local/bin/egress-guard
echo "install.sh: installed $(command -v egress-guard) -> $here/dist/cli.js"
echo "install.sh: next: egress-guard up        (all-in-one on this host; egress-guard doctor checks prerequisites)"
