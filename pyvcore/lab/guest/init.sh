#!/bin/sh
# /init of the pyvcore lab initramfs (busybox sh): prepare a KVM-HV host,
# run one guest scenario with pyvcore-vmm, power off.
# Kernel command line: pyvcore.scenario=NAME (default all), pyvcore.hold=SECONDS
# (default 2; 0 = keep the guest running until the lab is stopped),
# pyvcore.start_timeout=SECONDS (how long the VMM waits for every vcpu's first
# run before it says STALLED; default 15, 45 at 8 threads).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

scenario=all
hold=2
start_timeout=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pyvcore.scenario=*) scenario="${arg#pyvcore.scenario=}" ;;
        pyvcore.hold=*) hold="${arg#pyvcore.hold=}" ;;
        pyvcore.start_timeout=*) start_timeout="${arg#pyvcore.start_timeout=}" ;;
    esac
done
echo "PYVCORE INIT scenario=$scenario hold=$hold uptime=$(cut -d' ' -f1 /proc/uptime)"

finish() {
    # The last line the lab reads before the machine goes away.
    echo "PYVCORE POWEROFF"
    sync
    poweroff -f
    sleep 60
}

done_error() {
    echo "PYVCORE DONE scenario=$scenario status=error reason=$1"
    finish
}

case "$hold" in
    ''|*[!0-9.]*) done_error "bad-hold:$hold" ;;
esac
case "$start_timeout" in
    ''|*[!0-9.]*) done_error "bad-start-timeout:$start_timeout" ;;
esac

# KVM-HV on POWER8 runs a whole core: the host's secondary threads must be
# offline (napping), else KVM_RUN fails with EBUSY.  cpu0 (thread 0 of the
# one core) stays online: it runs the vcore.
for online in /sys/devices/system/cpu/cpu*/online; do
    case "$online" in */cpu0/online) continue ;; esac
    echo 0 > "$online"
done

# No module files: a kernel with KVM and KVM-HV built in.
if [ -f /lib/modules/kvm.ko ]; then
    insmod /lib/modules/kvm.ko || done_error "insmod-kvm"
fi
if [ -f /lib/modules/kvm-hv.ko ]; then
    insmod /lib/modules/kvm-hv.ko || done_error "insmod-kvm-hv"
fi
[ -e /dev/kvm ] || done_error "no-dev-kvm"

# Where the modules landed (they move every boot): gdb needs them for
# add-symbol-file and breakpoints in kvm-hv.ko.
for module in kvm kvm_hv; do
    for section in /sys/module/$module/sections/.* /sys/module/$module/sections/*; do
        [ -f "$section" ] || continue
        echo "PYVCORE MODULE $module ${section##*/} $(cat "$section")"
    done
done

echo "PYVCORE KVM uptime=$(cut -d' ' -f1 /proc/uptime) online=$(cat /sys/devices/system/cpu/online)"
# From here on the console carries the VMM's long REPORT lines: keep kernel
# warnings (e.g. "hrtimer: interrupt took N ns" under TCG load) from being
# printed into the middle of one; errors and worse still reach the console.
echo 4 > /proc/sys/kernel/printk
/bin/pyvcore-vmm "$scenario" "$hold" "$start_timeout"
finish
