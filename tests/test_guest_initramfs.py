"""Building the lab's guest programs and initramfs (no QEMU needed)."""

import gzip
import lzma
import shutil
import stat
import subprocess

import pytest

from pyvcore.lab.guest import (
    CROSS_CC,
    CpioEntry,
    GuestBuildError,
    build_guest_programs,
    build_initramfs,
    list_initramfs,
    read_newc,
    write_newc,
)

FAKE_ELF = b"\x7fELF" + b"\0" * 60


def test_newc_roundtrip_keeps_names_modes_data_and_devices():
    entries = [
        CpioEntry("dev", stat.S_IFDIR | 0o755),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
        CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        CpioEntry("odd", stat.S_IFREG | 0o644, b"x" * 5),
    ]
    blob = write_newc(entries)
    assert blob.startswith(b"070701") and len(blob) % 512 == 0
    assert read_newc(blob) == entries


def test_read_newc_rejects_garbage():
    with pytest.raises(ValueError, match="not a newc"):
        read_newc(b"hello world" * 20)


@pytest.fixture
def inputs(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(FAKE_ELF)
    kvm = tmp_path / "kvm.ko"
    kvm.write_bytes(FAKE_ELF + b"kvm")
    kvm_hv_xz = tmp_path / "kvm-hv.ko.xz"
    kvm_hv_xz.write_bytes(lzma.compress(FAKE_ELF + b"kvm-hv", format=lzma.FORMAT_XZ))
    vmm = tmp_path / "pyvcore-vmm"
    vmm.write_bytes(FAKE_ELF + b"vmm")
    return busybox, {"kvm": kvm, "kvm_hv": kvm_hv_xz}, {"pyvcore-vmm": vmm}


def test_initramfs_contents(tmp_path, inputs):
    busybox, modules, programs = inputs
    out = build_initramfs(tmp_path / "initrd.gz", busybox=busybox, modules=modules, programs=programs)
    members = list_initramfs(out)
    assert stat.S_ISCHR(members["dev/console"])
    assert stat.S_ISLNK(members["bin/sh"])
    for name in ("init", "bin/busybox", "bin/pyvcore-vmm"):
        assert stat.S_ISREG(members[name]) and members[name] & 0o111, name
    assert {"lib/modules/kvm.ko", "lib/modules/kvm-hv.ko"} <= set(members)
    files = {e.name: e.data for e in read_newc(gzip.decompress(out.read_bytes()))}
    # .ko.xz is stored decompressed: busybox insmod cannot read xz
    assert files["lib/modules/kvm-hv.ko"] == FAKE_ELF + b"kvm-hv"
    assert b"pyvcore-vmm" in files["init"] and b"insmod /lib/modules/kvm-hv.ko" in files["init"]


def test_initramfs_is_reproducible(tmp_path, inputs):
    busybox, modules, programs = inputs
    a = build_initramfs(tmp_path / "a.gz", busybox=busybox, modules=modules, programs=programs)
    b = build_initramfs(tmp_path / "b.gz", busybox=busybox, modules=modules, programs=programs)
    assert a.read_bytes() == b.read_bytes()


def test_initramfs_without_kvm_hv_says_what_is_missing(tmp_path, inputs):
    busybox, modules, programs = inputs
    with pytest.raises(GuestBuildError, match="kvm-hv"):
        build_initramfs(
            tmp_path / "x.gz", busybox=busybox, modules={"kvm": modules["kvm"]}, programs=programs
        )


def test_initramfs_rejects_a_module_that_is_not_elf(tmp_path, inputs):
    busybox, modules, programs = inputs
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"not a module")
    with pytest.raises(GuestBuildError, match="not a kernel module"):
        build_initramfs(
            tmp_path / "x.gz", busybox=busybox, modules={**modules, "kvm": bad}, programs=programs
        )


def test_missing_cross_compiler_names_the_package(tmp_path):
    with pytest.raises(GuestBuildError, match="gcc-powerpc64le-linux-gnu"):
        build_guest_programs(tmp_path, cc="no-such-powerpc64le-gcc")


@pytest.mark.skipif(
    shutil.which(CROSS_CC) is None, reason=f"{CROSS_CC} not installed (`pyvcore lab setup` installs it)"
)
def test_vmm_cross_compiles_static_ppc64le_and_is_cached(tmp_path):
    programs = build_guest_programs(tmp_path)
    vmm = programs["pyvcore-vmm"]
    head = vmm.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1  # ELF64, little-endian
    assert int.from_bytes(head[18:20], "little") == 21  # EM_PPC64
    mtime = vmm.stat().st_mtime_ns
    assert build_guest_programs(tmp_path)["pyvcore-vmm"].stat().st_mtime_ns == mtime
    objdump = CROSS_CC.replace("gcc", "objdump")
    if shutil.which(objdump):
        syms = subprocess.run([objdump, "-t", str(vmm)], capture_output=True, text=True).stdout
        assert "pv_guest_msgsndp" in syms and "pv_guest_spin_loop" in syms
        dyn = subprocess.run([objdump, "-p", str(vmm)], capture_output=True, text=True).stdout
        assert "NEEDED" not in dyn  # static: runs in a busybox initramfs
