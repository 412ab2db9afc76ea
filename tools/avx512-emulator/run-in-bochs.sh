#!/bin/bash
# run-in-bochs.sh STATIC_BINARY [ARGS...]
#
# Boots a Linux kernel in Bochs 3.0 (cpu model "sapphire_rapids": AVX-512
# F/BW/VL/VNNI/BF16, AMX-BF16, AVX-VNNI...)
# with a tiny init that mounts proc/sys/dev/tmp and runs STATIC_BINARY ARGS...,
# then powers off.  The program's console output is printed to stdout.
#
# Exit code: the program's exit code (0 = success); 128+N if it was killed by
# signal N (e.g. 132 = SIGILL); 124 on timeout; 125 on harness/boot failure.
#
# Environment knobs:
#   BOCHS_TIMEOUT=secs     wall-clock limit (default 1800)
#   BOCHS_MEGS=MiB         guest RAM (default 1024; binary lives in RAM too)
#   BOCHS_CPU=model        Bochs cpu model (default sapphire_rapids; also tigerlake,
#                          arrow_lake: AVX-VNNI without AVX-512)
#   BOCHS_IPS=n            emulated instructions per guest second (default 100000000)
#   BOCHS_ENV="A=1 B=2"    extra environment vars for the program (space separated)
#   BOCHS_KEEP=1           keep the work dir (iso, bochsrc, logs) and print its path
#   BOCHS_VERBOSE=1        print the full serial log (kernel messages too)
#   BOCHS_LOGLEVEL=n       kernel console loglevel (default 3; 7 = chatty, slows boot)
#   BOCHS_CMDLINE_EXTRA=.. extra kernel parameters (do not pass another clearcpuid=,
#                          it would replace the one below)
#   BOCHS_KERNEL=path      bzImage to boot (default: $BOCHS_STATE/vmlinuz from setup.sh)
#
# Kernel workarounds (found with Bochs 2.7's tigerlake model, kept for 3.0):
#   clearcpuid=pku,xsaves,xsavec : Bochs reports broken XSAVE leaf 0xD data for PKRU
#       and compacted sizes; without this the kernel disables XSAVE entirely (no AVX
#       for user space).  With it: XCR0=0xe7, 'standard' XSAVE format.
#   clearcpuid=fsrm : the kernel's FSRM memmove path corrupts memory under Bochs 2.7
#       and the boot hangs.  (Only the kernel's view changes: user-space CPUID still
#       shows every tigerlake feature.)
#   no5lvl : Bochs 3.0's sapphire_rapids model has LA57, and its SMM return
#       ("SMM restore: CR4 consistency check failed") panics once the kernel
#       runs with 5-level paging.
# AMX stays off in the guest: Linux hands out tile state only with XFD (the
# XSAVE "extended feature disable" MSR), which Bochs 3.0 does not implement,
# and XFD needs XSAVES, cleared above; the tests see arch_prctl refuse the
# tile permission, i.e. the fallback path.
set -u
HARNESS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Built and downloaded state (setup.sh): kernel, init, per-run work dirs.
STATE="${BOCHS_STATE:-${TMPDIR:-/tmp}/blip3-bochs}"

if [ $# -lt 1 ]; then
    echo "usage: $0 STATIC_BINARY [ARGS...]" >&2
    exit 2
fi
BIN="$1"; shift
if [ ! -f "$BIN" ]; then echo "run-in-bochs: no such file: $BIN" >&2; exit 2; fi
if file -L "$BIN" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "run-in-bochs: warning: $BIN looks dynamically linked; it will not run (no libc in the initramfs)" >&2
fi

TIMEOUT="${BOCHS_TIMEOUT:-1800}"
MEGS="${BOCHS_MEGS:-1024}"
CPU="${BOCHS_CPU:-sapphire_rapids}"
IPS="${BOCHS_IPS:-100000000}"
KERNEL="${BOCHS_KERNEL:-$STATE/vmlinuz}"
INIT="$STATE/init"
# Bochs 3.0 unpacked by setup.sh, with its BIOS image (the VGA BIOS is Debian's vgabios).
BOCHS_BIN="$STATE/bochs3/bochs-bin"
SHARE="$STATE/bochs3/root/usr/share/bochs"
[ -x "$BOCHS_BIN" ] || { echo "run-in-bochs: no Bochs 3.0 at $BOCHS_BIN: run $HARNESS/setup.sh first" >&2; exit 125; }
[ -f "$KERNEL" ] || { echo "run-in-bochs: no kernel at $KERNEL: run $HARNESS/setup.sh first" >&2; exit 125; }
if [ ! "$INIT" -nt "$HARNESS/init.c" ]; then
    mkdir -p "$STATE"
    gcc -O2 -static -o "$INIT" "$HARNESS/init.c" || exit 125
fi

mkdir -p "$STATE/runs"
W="$(mktemp -d "$STATE/runs/run.XXXXXX")"
cleanup() {
    [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null
    if [ "${BOCHS_KEEP:-0}" = 1 ]; then echo "run-in-bochs: work dir kept: $W" >&2
    else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- initramfs (uncompressed newc cpio: no emulated decompression) ----
R="$W/root"
mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$W/iso/isolinux"
cp "$INIT" "$R/init"
NAME="$(basename "$BIN")"
cp "$BIN" "$R/bin/$NAME"; chmod 755 "$R/bin/$NAME" "$R/init"
{ printf '%s\0' "/bin/$NAME"; for a in "$@"; do printf '%s\0' "$a"; done; } > "$R/args"
: > "$R/env"
for e in ${BOCHS_ENV:-}; do printf '%s\0' "$e" >> "$R/env"; done
(cd "$R" && find . | cpio -o -H newc --quiet) > "$W/iso/initrd" || exit 125

# ---- bootable ISO (isolinux) ----
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$W/iso/isolinux/"
cp "$KERNEL" "$W/iso/vmlinuz"
CMDLINE="console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 loglevel=${BOCHS_LOGLEVEL:-3} panic=0 nokaslr mitigations=off lpj=1000000 tsc=reliable no_timer_check nosmp clearcpuid=pku,xsaves,xsavec,fsrm no5lvl cryptomgr.notests init_on_alloc=0 nowatchdog nmi_watchdog=0 pci=noaer audit=0 selinux=0 apparmor=0 init=/init rdinit=/init ${BOCHS_CMDLINE_EXTRA:-}"
cat > "$W/iso/isolinux/isolinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd $CMDLINE
EOF
xorriso -as mkisofs -quiet -o "$W/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table "$W/iso" 2>"$W/xorriso.log" || { cat "$W/xorriso.log" >&2; exit 125; }
rm -rf "$R" "$W/iso"

# ---- bochs config ----
# bochs allocates at most 2048 MiB of host RAM; a bigger guest is backed by a swap file
if [ "$MEGS" -le 2048 ]; then MEMLINE="megs: $MEGS"; else MEMLINE="memory: guest=$MEGS, host=2048"; fi
cat > "$W/bochsrc" <<EOF
display_library: rfb, options="timeout=0"
$MEMLINE
cpu: model=$CPU, count=1, ips=$IPS, reset_on_triple_fault=0, ignore_bad_msrs=1
romimage: file=$SHARE/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
pci: enabled=1, chipset=i440fx
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path="$W/boot.iso", status=inserted
boot: cdrom
clock: sync=none, time0=local
com1: enabled=1, mode=file, dev="$W/serial.log"
log: $W/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
magic_break: enabled=0
mouse: enabled=0
speaker: enabled=0
sound: driver=dummy
EOF
printf 'c\nquit\n' > "$W/dbg.rc"   # bochs is built with its debugger: just continue

# ---- run ----
# The only headless display library in Debian's bochs package is rfb (a VNC server on
# port 590x).  Run bochs in a private network namespace when possible so that nothing
# is exposed and parallel runs never collide on the port.
NETNS=""
if unshare -n true 2>/dev/null; then NETNS="unshare -n"; fi
START=$(date +%s)
$NETNS "$BOCHS_BIN" -q -f "$W/bochsrc" -rc "$W/dbg.rc" </dev/null >"$W/bochs.out" 2>&1 &
BPID=$!
RC=""
while :; do
    if ! kill -0 "$BPID" 2>/dev/null; then break; fi
    if grep -qa -e 'BOCHS-HARNESS: poweroff' -e 'Kernel panic' "$W/serial.log" 2>/dev/null; then
        sleep 2   # let power-off happen / panic text flush
        break
    fi
    if [ $(( $(date +%s) - START )) -ge "$TIMEOUT" ]; then RC=124; break; fi
    sleep 0.5
done
kill "$BPID" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$BPID" 2>/dev/null || break; sleep 0.5; done
kill -9 "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; BPID=""
END=$(date +%s)

LOG="$W/serial.log"
touch "$LOG"
if [ "${BOCHS_VERBOSE:-0}" = 1 ]; then
    tr -d '\r' < "$LOG"
else
    # program output = everything between the start marker and the exit marker
    tr -d '\r' < "$LOG" | sed -n '/^BOCHS-HARNESS: start$/,$p' \
        | grep -av -e '^BOCHS-HARNESS: \(start\|poweroff\)$' -e '^\[ *[0-9]*\.[0-9]*\] reboot: Power down$'
    grep -qa 'BOCHS-HARNESS: start' "$LOG" || { echo "--- no program start marker; serial log: ---"; tr -d '\r' < "$LOG" | tail -50; }
fi
echo "run-in-bochs: wall time $((END-START))s" >&2

if [ -z "$RC" ]; then
    ST="$(tr -d '\r' < "$LOG" | grep -a '^BOCHS-HARNESS: \(exit status\|killed by signal\)' | tail -1)"
    case "$ST" in
        *"exit status "*) RC="${ST##*exit status }";;
        *"killed by signal "*) S="${ST##*killed by signal }"; RC=$((128 + ${S%% *}));;
        *) RC=125
           echo "run-in-bochs: program did not finish normally; bochs output:" >&2
           tail -20 "$W/bochs.out" >&2; grep -a -E 'PANIC|ERROR|FATAL' "$W/bochs.log" | tail -10 >&2;;
    esac
else
    echo "run-in-bochs: TIMEOUT after ${TIMEOUT}s" >&2
fi
exit "$RC"
