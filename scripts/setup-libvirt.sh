#!/usr/bin/env bash
# Installs and starts libvirt + QEMU for the agent's libvirt driver on a Debian 12 host without
# systemd (run as root). Idempotent: a second run only checks that everything is in place.
set -euo pipefail

log() { echo "setup-libvirt: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-libvirt: must run as root" >&2
  exit 1
fi

# The host already carries qemu-utils from bookworm-backports while /etc/apt only lists
# bookworm, so QEMU must come from backports too. A private sources list keeps /etc/apt intact.
APT_DIR=/var/lib/andromede/apt
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$APT_DIR/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::lists=$APT_DIR/lists"
  -o "APT::Get::List-Cleanup=0"
)
export DEBIAN_FRONTEND=noninteractive

write_sources() {
  mkdir -p "$APT_DIR/lists/partial"
  local mirror=http://deb.debian.org/debian security=http://deb.debian.org/debian-security
  local want
  want="deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $mirror bookworm-backports main
deb $security bookworm-security main"
  if [ ! -f "$APT_DIR/sources.list" ] || [ "$(cat "$APT_DIR/sources.list")" != "$want" ]; then
    printf '%s\n' "$want" >"$APT_DIR/sources.list"
    log "wrote private apt sources list $APT_DIR/sources.list"
  fi
}

apt_update_if_stale() {
  # One refresh a day is plenty; a second run of this script must not hit the mirror again.
  local stamp="$APT_DIR/updated"
  if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
    log "apt-get update (private lists)"
    apt-get "${APT_OPTS[@]}" update -qq
    touch "$stamp"
  fi
}

PKGS=(
  libvirt-daemon-system libvirt-dev libvirt-clients qemu-utils pkg-config
  qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports
  qemu-system-data/bookworm-backports seabios/bookworm-backports
  ipxe-qemu dnsmasq-base iptables
  # The guest image build: busybox's cpio applet packs the initramfs.
  busybox-static
)

missing_pkgs() {
  local p name
  for p in "${PKGS[@]}"; do
    name=${p%%/*}
    if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed'; then
      echo "$name"
    fi
  done
}

write_sources
if [ -n "$(missing_pkgs)" ]; then
  log "missing packages: $(missing_pkgs | tr '\n' ' ')"
  apt_update_if_stale
  apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${PKGS[@]}"
  log "installed packages"
else
  log "packages already installed"
fi

start_daemon() {
  local name=$1 bin=$2
  if pgrep -x "$name" >/dev/null 2>&1; then
    log "$name already running"
  else
    "$bin" -d
    log "started $name"
  fi
}

# Without udev nobody gives /dev/kvm its usual root:kvm 0660. libvirt then finds its cached QEMU
# capabilities (probed as root, KVM seen) invalid for the qemu user on every domain start and
# re-probes QEMU for ~50 s each time. Guests still run under TCG; this only keeps the cache valid.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
  if [ "$(stat -c %G:%a /dev/kvm)" != "kvm:660" ]; then
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
    log "set /dev/kvm to root:kvm 0660 (what udev would do)"
  else
    log "/dev/kvm already root:kvm 0660"
  fi
fi

mkdir -p /run/libvirt
start_daemon virtlogd /usr/sbin/virtlogd
start_daemon libvirtd /usr/sbin/libvirtd

for _ in $(seq 1 100); do
  [ -S /run/libvirt/libvirt-sock ] && break
  sleep 0.1
done
if [ ! -S /run/libvirt/libvirt-sock ]; then
  echo "setup-libvirt: /run/libvirt/libvirt-sock did not appear" >&2
  exit 1
fi
# The socket exists a moment before libvirtd answers; wait for a real reply.
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c qemu:///system version >/dev/null
log "libvirtd answers on qemu:///system"

if ! virsh -c qemu:///system net-info default >/dev/null 2>&1; then
  if [ -f /usr/share/libvirt/networks/default.xml ]; then
    virsh -c qemu:///system net-define /usr/share/libvirt/networks/default.xml >/dev/null
    log "defined network default"
  else
    echo "setup-libvirt: no default network definition found" >&2
    exit 1
  fi
fi
# Captured first: with pipefail, grep -q closing the pipe early could fail the whole test.
net_info=$(virsh -c qemu:///system net-info default)
if grep -Eq '^Active:\s+yes' <<<"$net_info"; then
  log "network default already active"
else
  virsh -c qemu:///system net-start default >/dev/null
  log "started network default"
fi
virsh -c qemu:///system net-autostart default >/dev/null 2>&1 || true

mkdir -p /var/lib/andromede/pool /var/lib/andromede/console
log "done: $(virsh -c qemu:///system version | grep -i 'running hypervisor' || true)"
