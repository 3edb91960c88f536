//! Any bytes as a kernel image: parse the ELF, then ask it everything the
//! gdb side and `pyvcore.kernel` ask (symbols, file offsets, relocations,
//! BTF layouts).  Nothing may panic, recurse without bound or allocate from
//! a size in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyvcore_core::btf::KernelImage;

const NAMES: &[&str] = &["paca_struct", "kvmppc_host_state", "kvmppc_vcore", "kvm_vcpu", "s"];

fuzz_target!(|data: &[u8]| {
    let Ok(image) = KernelImage::parse(data) else {
        return;
    };
    let _ = image.release();
    let _ = image.modinfo("vermagic");
    for (name, sym) in image.symbols.iter().take(64) {
        let _ = image.file_offset(name, sym.local_entry, 4);
        let _ = image.relocations_in(&sym.section, sym.address, 8);
    }
    if let Ok(layouts) = image.layouts() {
        for name in NAMES {
            let _ = layouts.struct_layout(name);
        }
        for id in 1..32 {
            let _ = layouts.layout_by_id(id);
        }
    }
});
