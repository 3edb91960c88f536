//! Any bytes as a `.BTF` section (and, split in two, as a base plus a
//! module's split BTF): every layout lookup returns a value or a typed
//! error, never a panic, a stack overflow or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyvcore_core::btf::Layouts;

fn exercise(layouts: &Layouts) {
    for name in ["s", "paca_struct", "kvmppc_vcore", "int"] {
        let _ = layouts.struct_layout(name);
        let _ = layouts.has_type(name);
    }
    for id in 0..64 {
        let _ = layouts.layout_by_id(id);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(base) = Layouts::from_bytes(data) {
        exercise(&base);
        // The same bytes as a module's split BTF on top of itself.
        if let Ok(split) = base.with_split(data) {
            exercise(&split);
        }
    }
});
