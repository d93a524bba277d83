#!/usr/bin/env bash
# Install egress-guard on this Debian/Ubuntu host from a clone of the repository: the kernel tools it
# drives, Node.js 20+, its npm dependencies, a build, and the `egress-guard` command
# (/usr/local/bin, or $EG_BIN_DIR). Idempotent; run as root from anywhere: sudo bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
bin_dir=${EG_BIN_DIR:-/usr/local/bin}
export DEBIAN_FRONTEND=noninteractive

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and $bin_dir/egress-guard): sudo bash install.sh"
command -v apt-get >/dev/null || die "needs apt-get (Debian or Ubuntu); elsewhere install iptables, ipset, nftables, iproute2 and Node.js 20+, then: npm ci && npm run build"

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pkgs=(iptables ipset nftables iproute2 ca-certificates)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

node_major() { command -v node >/dev/null && node -p 'process.versions.node.split(".")[0]' || echo 0; }
if [ "$(node_major)" -lt 20 ]; then
  # The distribution's own nodejs when it is new enough (Debian 13, Ubuntu 24.10+); Debian 12 and
  # Ubuntu 22.04/24.04 ship 18, so NodeSource's Node 20 repository is added there.
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  cand=$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ {print $2}' | sed -E 's/^[0-9]+://; s/[^0-9].*//')
  if [ -n "$cand" ] && [ "$cand" -ge 20 ] 2>/dev/null; then
    say "installing nodejs $cand from the distribution"
    apt_install nodejs npm
  else
    say "installing Node.js 20 from NodeSource (the distribution has ${cand:-none})"
    apt_install curl gnupg
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
    echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" >/etc/apt/sources.list.d/nodesource.list
    apt_updated=
    apt_install nodejs
  fi
  [ "$(node_major)" -ge 20 ] || die "Node.js 20 or newer is required; found $(node --version 2>/dev/null || echo none)"
fi
command -v npm >/dev/null || apt_install npm

say "node $(node --version); npm ci"
npm ci --no-fund --no-audit --loglevel=error
say "building"
npm run -s build
chmod 0755 dist/cli.js
# Run with sudo in a user's own clone: give the build back to that user so `npm test` works
# unprivileged. Never in a root-owned tree (/opt/egress-guard): services run that code as root.
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && [ "$(stat -c %U .)" = "$SUDO_USER" ]; then
  chown -R "$SUDO_USER": node_modules dist
fi
install -d -m 0755 "$bin_dir"
ln -sfn "$here/dist/cli.js" "$bin_dir/egress-guard"
say "installed $bin_dir/egress-guard -> $here/dist/cli.js"
say "next, from $here: egress-guard up   (all-in-one on this host; egress-guard doctor checks prerequisites)"
