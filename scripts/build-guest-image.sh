#!/usr/bin/env bash
# Builds Andromède's tiny test guest (Debian cloud kernel + busybox initramfs + blank root disk)
# into OUTDIR (default target/guest): vmlinuz, initrd.img, root.qcow2 and SHA256SUMS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/target/guest}"
SRC="$ROOT/scripts/guest"
SELF="$ROOT/scripts/build-guest-image.sh"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
CACHE="$OUT/.cache"

log() { echo "build-guest-image: $*"; }

# Up to date when every output exists and is newer than every source.
up_to_date() {
  local o s
  for o in vmlinuz initrd.img root.qcow2 SHA256SUMS; do
    [ -f "$OUT/$o" ] || return 1
    for s in "$SELF" "$SRC"/*; do
      [ "$OUT/$o" -nt "$s" ] || return 1
    done
  done
}
if up_to_date; then
  log "up to date in $OUT"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb qemu-img sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-guest-image: $tool is missing (run scripts/setup-libvirt.sh)" >&2; exit 1; }
done

# Use the private lists scripts/setup-libvirt.sh maintains when present, else the system's.
APT_OPTS=()
if [ -f /var/lib/andromede/apt/sources.list ]; then
  APT_OPTS=(
    -o Dir::Etc::sourcelist=/var/lib/andromede/apt/sources.list
    -o Dir::Etc::sourceparts=-
    -o Dir::State::lists=/var/lib/andromede/apt/lists
  )
fi

mkdir -p "$CACHE/debs"
fetch_deb() {
  local pkg=$1
  if ! ls "$CACHE/debs/${pkg}_"*.deb >/dev/null 2>&1; then
    log "downloading $pkg"
    (cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" download -q "$pkg" 2>&1 | grep -v unsandboxed || true)
  fi
  ls "$CACHE/debs/${pkg}_"*.deb >/dev/null 2>&1 || { echo "build-guest-image: cannot download $pkg" >&2; exit 1; }
}

# The metapackage names the current ABI's kernel package.
kpkg=$(apt-cache "${APT_OPTS[@]}" depends linux-image-cloud-amd64 2>/dev/null \
  | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)
[ -n "$kpkg" ] || { echo "build-guest-image: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
fetch_deb "$kpkg"
fetch_deb busybox-static

rm -rf "$CACHE/x"
mkdir -p "$CACHE/x"
dpkg-deb -x "$CACHE/debs/${kpkg}_"*.deb "$CACHE/x/kernel"
dpkg-deb -x "$CACHE/debs/busybox-static_"*.deb "$CACHE/x/busybox"
BB="$CACHE/x/busybox/bin/busybox"
kver=$(ls "$CACHE/x/kernel/lib/modules")
MODDIR="$CACHE/x/kernel/lib/modules/$kver"
# The package ships no modules.dep (depmod runs at install time); busybox's depmod makes one.
"$BB" depmod -b "$CACHE/x/kernel" "$kver"

# The initramfs tree.
IR="$CACHE/x/initramfs"
mkdir -p "$IR"/{bin,dev,proc,sys,tmp,etc,mnt/seed,lib/modules}
cp "$BB" "$IR/bin/busybox"
cp "$SRC/init" "$IR/init"
chmod 0755 "$IR/init" "$IR/bin/busybox"

# Modules in load order: each one's dependencies (from modules.dep) before it, once.
declare -A seen=()
order=()
add_module() {
  local rel=$1 deps d
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  deps=$(sed -n "s|^$rel: *||p" "$MODDIR/modules.dep")
  for d in $deps; do add_module "$d"; done
  order+=("$rel")
}
while read -r name; do
  case "$name" in ''|'#'*) continue ;; esac
  rel=$(sed -n "s|^\(\([^:]*/\)\?${name}\.ko[^:]*\):.*|\1|p" "$MODDIR/modules.dep" | head -n 1)
  if [ -z "$rel" ]; then
    # Built into this kernel, or renamed: nothing to load.
    log "module $name not found as a file; assuming built in"
    continue
  fi
  add_module "$rel"
done <"$SRC/modules"
: >"$IR/etc/modules.order"
for rel in "${order[@]}"; do
  base=${rel##*/}
  case "$base" in
    *.ko) cp "$MODDIR/$rel" "$IR/lib/modules/$base" ;;
    *.ko.xz) "$BB" xz -dc "$MODDIR/$rel" >"$IR/lib/modules/${base%.xz}"; base=${base%.xz} ;;
    *.ko.zst) zstd -dcq "$MODDIR/$rel" >"$IR/lib/modules/${base%.zst}"; base=${base%.zst} ;;
    *) echo "build-guest-image: unsupported module file $rel" >&2; exit 1 ;;
  esac
  echo "$base" >>"$IR/etc/modules.order"
done
log "modules: $(tr '\n' ' ' <"$IR/etc/modules.order")"

# newc cpio via busybox's own applet, gzip-compressed (the kernel has RD_GZIP).
(cd "$IR" && find . | sort | "$BB" cpio -o -H newc 2>/dev/null | gzip -9n) >"$OUT/initrd.img.tmp"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
cp "$CACHE/x/kernel/boot/vmlinuz-$kver" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"

# The base root disk stays blank: the initramfs is the whole guest OS.
rm -f "$OUT/root.qcow2.tmp"
qemu-img create -q -f qcow2 "$OUT/root.qcow2.tmp" 64M
mv "$OUT/root.qcow2.tmp" "$OUT/root.qcow2"

(cd "$OUT" && sha256sum vmlinuz initrd.img root.qcow2 >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
rm -rf "$CACHE/x"
log "built guest (kernel $kver) in $OUT:"
cat "$OUT/SHA256SUMS"
