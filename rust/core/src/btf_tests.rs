//! The BTF reader on crafted sections (each the smallest input of its kind
//! of corruption) and on the lab's real vmlinux when it is there.

use std::path::Path;

use super::*;
use crate::btf_craft::BtfBuilder;

fn layout(b: &BtfBuilder, name: &str) -> Result<StructLayout, ImageError> {
    Layouts::from_bytes(&b.bytes())?.struct_layout(name)
}

#[test]
fn garbage_btf_is_an_error_not_a_panic() {
    assert!(matches!(
        Layouts::from_bytes(&[0u8; 64]),
        Err(ImageError::BadBtf(_))
    ));
    assert!(Layouts::from_bytes(&[]).is_err());
}

#[test]
fn crafted_struct_reads_back() {
    let mut b = BtfBuilder::new();
    let u8_ = b.int("u8", 1);
    let u64_ = b.int("u64", 8);
    let arr = b.array(u64_, 7);
    let p = b.ptr(u8_);
    b.structure("s", 72, &[("a", u8_, 0), ("v", arr, 8), ("p", p, 64)]);
    let l = layout(&b, "s").unwrap();
    assert_eq!(l.size, 72);
    let v = l.member("v").unwrap();
    assert_eq!(
        (v.offset, v.size, v.array_len, v.elem_size),
        (8, 56, Some(7), Some(8))
    );
    assert_eq!(v.type_name, "u64[7]");
    assert_eq!(l.member("p").unwrap().type_name, "u8 *");
}

#[test]
fn array_of_itself_is_a_cycle() {
    let mut b = BtfBuilder::new();
    let me = b.next_id();
    b.array(me, 2);
    b.structure("s", 8, &[("a", me, 0)]);
    let err = layout(&b, "s").unwrap_err();
    assert!(matches!(err, ImageError::Cycle { id, .. } if id == me), "{err:?}");
    assert!(err.to_string().contains("corrupt .BTF"), "{err}");
}

#[test]
fn two_hundred_thousand_nested_arrays_are_too_deep_not_a_crash() {
    let mut b = BtfBuilder::new();
    let mut t = b.int("int", 4);
    for _ in 0..200_000 {
        t = b.array(t, 1);
    }
    b.structure("s", 4, &[("a", t, 0)]);
    let err = layout(&b, "s").unwrap_err();
    assert!(
        matches!(err, ImageError::TooDeep { what: "arrays", .. }),
        "{err:?}"
    );
}

#[test]
fn typedef_cycle_is_a_cycle() {
    let mut b = BtfBuilder::new();
    let a = b.next_id();
    b.typedef("a_t", a + 1);
    b.typedef("b_t", a);
    b.structure("s", 8, &[("x", a, 0)]);
    let err = layout(&b, "s").unwrap_err();
    assert!(matches!(err, ImageError::Cycle { .. }), "{err:?}");
    // A typedef of itself, asked for by name.
    let mut b = BtfBuilder::new();
    let me = b.next_id();
    b.typedef("self_t", me);
    let err = layout(&b, "self_t").unwrap_err();
    assert!(matches!(err, ImageError::Cycle { .. }), "{err:?}");
}

#[test]
fn long_typedef_chain_is_too_deep() {
    let mut b = BtfBuilder::new();
    let mut t = b.int("int", 4);
    for i in 0..(MAX_CHAIN + 5) {
        t = b.typedef(&format!("t{i}"), t);
    }
    b.structure("s", 4, &[("x", t, 0)]);
    let err = layout(&b, "s").unwrap_err();
    assert!(matches!(err, ImageError::TooDeep { .. }), "{err:?}");
}

#[test]
fn pointer_cycle_and_self_containing_struct_are_read() {
    // A pointer to itself spells with a bounded depth; a struct that names
    // itself as a member takes its size from its own header.
    let mut b = BtfBuilder::new();
    let me = b.next_id();
    b.ptr(me);
    let s = b.next_id();
    b.structure("s", 16, &[("p", me, 0), ("again", s, 8)]);
    let l = layout(&b, "s").unwrap();
    assert_eq!(l.member("p").unwrap().kind, Kind::Ptr);
    assert!(l.member("p").unwrap().type_name.starts_with("? *"));
    assert_eq!(l.member("again").unwrap().size, 16);
}

#[test]
fn overflowing_array_size_is_an_error() {
    let mut b = BtfBuilder::new();
    let big = b.structure("big", u32::MAX, &[]);
    let a1 = b.array(big, u32::MAX);
    let a2 = b.array(a1, u32::MAX);
    b.structure("s", 8, &[("x", a2, 0)]);
    let err = layout(&b, "s").unwrap_err();
    assert!(matches!(err, ImageError::SizeOverflow { .. }), "{err:?}");
}

#[test]
fn dangling_type_id_is_an_error() {
    let mut b = BtfBuilder::new();
    b.structure("s", 8, &[("x", 999, 0)]);
    assert!(matches!(layout(&b, "s"), Err(ImageError::BadBtf(_))));
}

/// The kernel `pyvcore lab setup` unpacked (its manifest), or $PYVCORE_VMLINUX.
pub(crate) fn lab_file(key: &str) -> Option<String> {
    if key == "vmlinux" {
        if let Ok(p) = std::env::var("PYVCORE_VMLINUX") {
            return Some(p);
        }
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache")))
        .ok()?;
    let manifest = std::fs::read_to_string(cache.join("pyvcore/kernel/current.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&manifest).ok()?;
    let p = match key {
        "vmlinux" => v.get("vmlinux")?,
        module => v.get("modules")?.get(module)?,
    };
    let p = p.as_str()?.to_string();
    Path::new(&p).is_file().then_some(p)
}

/// Real-kernel test: the lab's vmlinux (Python's tests/test_btf.py compares
/// every layout with pahole; this checks the Rust side alone).
#[test]
fn real_vmlinux_layouts() {
    let Some(path) = lab_file("vmlinux") else {
        eprintln!("no vmlinux (run `pyvcore lab setup` or set PYVCORE_VMLINUX): not run");
        return;
    };
    let img = KernelImage::open(Path::new(&path)).unwrap();
    assert!(img.little_endian);
    assert!(img.symbol("paca_ptrs").is_some());
    let l = img.layouts().unwrap();
    let hs = l.struct_layout("kvmppc_host_state").unwrap();
    let ptid = hs.member("ptid").unwrap();
    assert_eq!(ptid.size, 1);
    let vc = hs.member("kvm_vcore").unwrap();
    assert_eq!(vc.kind, Kind::Ptr);
    assert_eq!(vc.type_name, "struct kvmppc_vcore *");
    // Debian 6.12 offsets as pahole prints them; other kernels differ.
    if img.release().as_deref().unwrap_or("").starts_with("6.12.") {
        let paca = l.struct_layout("paca_struct").unwrap();
        assert_eq!(paca.member("kvm_hstate").unwrap().offset, 664);
        assert_eq!(paca.size, 1280);
        assert_eq!(ptid.offset, 62);
        assert_eq!(vc.offset, 72);
    }
}

/// ELFv2 local entries of the real vmlinux and kvm-hv.ko, as `readelf -s`
/// prints them (`[<localentry>: 8]`): C functions that set up r2 have 8,
/// assembly entry points called without a TOC change have none.
#[test]
fn real_local_entries() {
    let (Some(vmlinux), Some(kvm_hv)) = (lab_file("vmlinux"), lab_file("kvm_hv")) else {
        eprintln!("no lab kernel (run `pyvcore lab setup`): not run");
        return;
    };
    let img = KernelImage::open(Path::new(&vmlinux)).unwrap();
    assert!(!img.relocatable);
    let nap = img.symbol("kvm_do_nap").unwrap();
    assert_eq!(nap.local_entry, 0);
    assert!(nap.address >= 0xc000_0000_0000_0000);
    assert_eq!(img.symbol("kvmhv_commence_exit").unwrap().local_entry, 8);
    let m = KernelImage::open(Path::new(&kvm_hv)).unwrap();
    assert!(m.relocatable);
    let run = m.symbol("kvmppc_run_core").unwrap();
    assert_eq!(run.section, ".text");
    assert_eq!(run.local_entry, 8);
    assert!(run.address < 0x10_0000, "section-relative: {:#x}", run.address);
    assert!(m.modinfo("vermagic").unwrap().starts_with("6.12."));
}
