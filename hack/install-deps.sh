#!/usr/bin/env bash
# Installs the Debian packages the tests and `make up` need, when missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
pkgs=(iproute2 procps bc mosquitto mosquitto-clients)
pkgs+=(containerd runc containernetworking-plugins busybox-static) # edged: private containerd + local images
pkgs+=(gcc pkg-config libmodbus-dev socat mbpoll dbus nodejs) # mapper tests: device peers
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
