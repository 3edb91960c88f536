//! ELF side of a kernel image: symbols (with the ppc64 ELFv2 local entry),
//! the section table, `.modinfo` and the relocation targets of a module.
//!
//! Everything is read once, with `object`, into owned tables, so that the
//! image bytes need not be kept.  Sizes that come from the file are never
//! used to allocate: the tables grow with what the file really holds.

use std::collections::HashMap;

use object::elf::SymbolOther;
use object::{Object, ObjectSection, ObjectSymbol, SectionIndex, SymbolFlags, SymbolKind};
use serde::Serialize;

/// A symbol from an ELF symtab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symbol {
    /// `st_value`: a virtual address in vmlinux; an offset into `section` in
    /// a relocatable module (`.ko`).
    pub address: u64,
    pub size: u64,
    /// Section name (what add-symbol-file / module sections are keyed by).
    pub section: String,
    pub local: bool,
    /// ELFv2 local entry offset in bytes (0 when the function has a single
    /// entry point): where callers that share the TOC arrive.
    pub local_entry: u64,
}

/// Local entry offset encoded in the three `STO_PPC64_LOCAL` bits of
/// `st_other`, as binutils (`ppc64_decode_local_entry`) and the kernel's
/// `PPC64_LOCAL_ENTRY_OFFSET` (arch/powerpc/include/uapi/asm/elf.h)
/// decode it: 0 and 1 mean one entry point, 2..6 mean 4..64 bytes.
pub fn local_entry_offset(st_other: u8) -> u64 {
    let v = (st_other & object::elf::STO_PPC64_LOCAL_MASK) >> object::elf::STO_PPC64_LOCAL_BIT;
    ((1u64 << v) >> 2) << 2
}

/// One section: name, load address, size, and where its bytes are in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub name: String,
    pub address: u64,
    pub size: u64,
    /// File offset and length of the section's bytes (None for NOBITS).
    pub file_range: Option<(u64, u64)>,
}

/// What is kept of an ELF file's tables.
#[derive(Debug, Default)]
pub struct ElfTables {
    pub symbols: HashMap<String, Symbol>,
    pub sections: Vec<Section>,
    /// Relocation targets per section name (relocatable files only; sorted
    /// by offset): (offset, bytes patched), e.g. ".text" -> [(0x1c, 4), ...].
    pub relocations: HashMap<String, Vec<(u64, u64)>>,
    /// `.modinfo` key=value pairs (modules), e.g. "vermagic".
    pub modinfo: Vec<(String, String)>,
}

/// Read the symbol, section, relocation and modinfo tables of a parsed ELF.
pub fn read_tables(file: &object::File<'_>) -> ElfTables {
    let mut section_names: HashMap<SectionIndex, String> = HashMap::new();
    let mut sections = Vec::new();
    for s in file.sections() {
        let name = s.name().unwrap_or("").to_string();
        section_names.insert(s.index(), name.clone());
        sections.push(Section {
            name,
            address: s.address(),
            size: s.size(),
            file_range: s.file_range(),
        });
    }
    ElfTables {
        symbols: read_symbols(file, &section_names),
        sections,
        relocations: read_relocations(file),
        modinfo: read_modinfo(file),
    }
}

fn read_symbols(file: &object::File<'_>, names: &HashMap<SectionIndex, String>) -> HashMap<String, Symbol> {
    let mut symbols: HashMap<String, Symbol> = HashMap::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() || sym.is_undefined() {
            continue;
        }
        if matches!(sym.kind(), SymbolKind::Section | SymbolKind::File) {
            continue;
        }
        let section = sym
            .section_index()
            .and_then(|i| names.get(&i).cloned())
            .unwrap_or_default();
        let st_other = match sym.flags() {
            SymbolFlags::Elf { st_other, .. } => st_other,
            _ => SymbolOther(0),
        };
        let new = Symbol {
            address: sym.address(),
            size: sym.size(),
            section,
            local: sym.is_local(),
            local_entry: local_entry_offset(st_other.0),
        };
        // Local labels can repeat across files; the first global wins, else
        // the first local.
        match symbols.get(name) {
            Some(old) if !old.local || new.local => {}
            _ => {
                symbols.insert(name.to_string(), new);
            }
        }
    }
    symbols
}

fn read_relocations(file: &object::File<'_>) -> HashMap<String, Vec<(u64, u64)>> {
    let mut out = HashMap::new();
    if file.kind() != object::ObjectKind::Relocatable {
        return out;
    }
    for s in file.sections() {
        let mut offsets: Vec<(u64, u64)> = s
            .relocations()
            .map(|(off, r)| (off, relocation_width(&r)))
            .collect();
        if offsets.is_empty() {
            continue;
        }
        offsets.sort_unstable();
        out.insert(s.name().unwrap_or("").to_string(), offsets);
    }
    out
}

/// Bytes a relocation patches from its offset: what `object` knows, else
/// for ppc64 8 for the doubleword types and 4 (one instruction word, which
/// covers the 16-bit and branch-displacement fields) for the rest.
fn relocation_width(r: &object::Relocation) -> u64 {
    use object::elf::*;
    if r.size() != 0 {
        return u64::from(r.size()).div_ceil(8);
    }
    match r.flags() {
        object::RelocationFlags::Elf { r_type } => match r_type {
            R_PPC64_ADDR64 | R_PPC64_UADDR64 | R_PPC64_REL64 | R_PPC64_TOC | R_PPC64_DTPMOD64
            | R_PPC64_TPREL64 | R_PPC64_DTPREL64 => 8,
            _ => 4,
        },
        _ => 8,
    }
}

fn read_modinfo(file: &object::File<'_>) -> Vec<(String, String)> {
    let Some(data) = file.section_by_name(".modinfo").and_then(|s| s.data().ok()) else {
        return Vec::new();
    };
    data.split(|&b| b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The NUL-terminated text at `address` (at most `max` bytes), if some
/// section holds it: used for `linux_banner`.
pub fn c_string_at(file: &object::File<'_>, address: u64, max: u64) -> Option<String> {
    file.sections().find_map(|s| {
        let end = s.address().checked_add(s.size())?;
        if address < s.address() || address >= end {
            return None;
        }
        let len = max.min(end - address);
        let bytes = s.data_range(address, len).ok().flatten()?;
        let stop = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(String::from_utf8_lossy(&bytes[..stop]).trim_end().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_entry_encoding_matches_binutils() {
        // st_other bits 5..7: 0 and 1 -> one entry; 2 -> 4 bytes; 3 -> 8 (the
        // usual `addis r2,r12,..; addi r2,r2,..` prologue); 6 -> 64.
        assert_eq!(local_entry_offset(0), 0);
        assert_eq!(local_entry_offset(1 << 5), 0);
        assert_eq!(local_entry_offset(2 << 5), 4);
        assert_eq!(local_entry_offset(3 << 5), 8);
        assert_eq!(local_entry_offset(6 << 5), 64);
        // Visibility bits do not leak in.
        assert_eq!(local_entry_offset((3 << 5) | 3), 8);
    }
}
