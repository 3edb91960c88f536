//! A kernel image (vmlinux or a decompressed `.ko`): what the ELF says
//! (architecture, symbols, sections, `.modinfo`, banner) plus its `.BTF`
//! bytes, and the typed errors of every reader of kernel images.

use std::collections::HashMap;
use std::path::Path;

use object::{Architecture, Object, ObjectSection};
use thiserror::Error;

use crate::btf::Layouts;
use crate::elf::{self, Section, Symbol};

/// Errors a user can cause: wrong file, stripped or corrupt kernel, unknown
/// struct.  Every message is one line and names the path at most once.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    /// The file cannot be read; `reason` is the OS's words, without the path.
    #[error("cannot read {path}: {reason}")]
    Io {
        path: String,
        reason: String,
        /// errno when the OS gave one.
        errno: Option<i32>,
    },
    #[error("file of {size} bytes is larger than the {limit}-byte limit of a kernel image")]
    TooLarge { size: u64, limit: u64 },
    #[error("not an ELF file ({0})")]
    NotElf(String),
    #[error("not a ppc64 kernel (ELF architecture is {0})")]
    NotPpc64(String),
    #[error("the image has no .BTF section")]
    NoBtf,
    #[error("corrupt .BTF section: {0}")]
    BadBtf(String),
    /// A chain of BTF types that comes back to itself (an array of itself, a
    /// typedef of itself...).  `id` is where the cycle closed.
    #[error("corrupt .BTF section: type #{id} refers back to itself ({what})")]
    Cycle { id: u32, what: &'static str },
    /// More nested types than any kernel has (arrays of arrays, typedef chains).
    #[error("corrupt .BTF section: more than {limit} nested {what} at type #{id}")]
    TooDeep { id: u32, what: &'static str, limit: u32 },
    #[error("corrupt .BTF section: the size of type #{id} overflows 64 bits")]
    SizeOverflow { id: u32 },
    #[error("no type named {0} in BTF")]
    NoSuchType(String),
    #[error("{0} is not a struct or union")]
    NotAStruct(String),
    #[error("no symbol {0} in the image")]
    NoSuchSymbol(String),
    #[error("{0}")]
    BadOffset(String),
}

/// Largest file accepted as a kernel image (a ppc64 vmlinux with DWARF is
/// about 0.9 GB): a cap on what is read into memory.
pub const MAX_IMAGE_BYTES: u64 = 4 << 30;

/// What we keep of a kernel ELF image: architecture, symbols, BTF, banner.
pub struct KernelImage {
    pub machine: String,
    pub little_endian: bool,
    pub is_64: bool,
    /// ET_REL: a module, whose symbols are section-relative.
    pub relocatable: bool,
    pub symbols: HashMap<String, Symbol>,
    pub sections: Vec<Section>,
    pub relocations: HashMap<String, Vec<(u64, u64)>>,
    pub modinfo: Vec<(String, String)>,
    pub btf: Option<Vec<u8>>,
    /// `linux_banner` text, if the symbol and its data are in the file.
    pub banner: Option<String>,
    pub has_debug_info: bool,
    /// The GNU build-id note (`NT_GNU_BUILD_ID`, `ld --build-id`) in lowercase hex:
    /// the same in a kernel and in the debug file split from it.
    pub build_id: Option<String>,
}

impl KernelImage {
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let io = |e: std::io::Error| ImageError::Io {
            path: path.display().to_string(),
            reason: io_reason(&e),
            errno: e.raw_os_error(),
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge {
                size,
                limit: MAX_IMAGE_BYTES,
            });
        }
        let data = std::fs::read(path).map_err(io)?;
        Self::parse(&data)
    }

    /// Parse an ELF image (vmlinux or a decompressed .ko).  Only ppc64 is
    /// accepted: the readers look for PACAs, which exist nowhere else.
    pub fn parse(data: &[u8]) -> Result<Self, ImageError> {
        if !data.starts_with(b"\x7fELF") {
            return Err(ImageError::NotElf("it does not start with the ELF magic".into()));
        }
        // An ELF header that does not parse: the reader's own words say where.
        let file = object::File::parse(data)
            .map_err(|e| ImageError::NotElf(format!("its ELF header does not parse: {e}")))?;
        let arch = file.architecture();
        if arch != Architecture::PowerPc64 {
            return Err(ImageError::NotPpc64(format!("{arch:?}")));
        }
        let tables = elf::read_tables(&file);
        let btf = match file.section_by_name(".BTF") {
            None => None,
            Some(s) => Some(
                s.uncompressed_data()
                    .map_err(|e| ImageError::BadBtf(e.to_string()))?
                    .into_owned(),
            ),
        };
        let banner = tables.symbols.get("linux_banner").and_then(|sym| {
            let max = if sym.size > 0 { sym.size.min(4096) } else { 256 };
            elf::c_string_at(&file, sym.address, max)
        });
        Ok(KernelImage {
            machine: format!("{arch:?}"),
            little_endian: file.is_little_endian(),
            is_64: file.is_64(),
            relocatable: file.kind() == object::ObjectKind::Relocatable,
            symbols: tables.symbols,
            sections: tables.sections,
            relocations: tables.relocations,
            modinfo: tables.modinfo,
            btf,
            banner,
            has_debug_info: file.section_by_name(".debug_info").is_some(),
            build_id: file
                .build_id()
                .ok()
                .flatten()
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        })
    }

    pub fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols.get(name)
    }

    pub fn layouts(&self) -> Result<Layouts, ImageError> {
        match &self.btf {
            Some(b) => Layouts::from_bytes(b),
            None => Err(ImageError::NoBtf),
        }
    }

    /// Kernel release from the banner ("Linux version 6.12.95+deb12-powerpc64le ...").
    pub fn release(&self) -> Option<String> {
        let b = self.banner.as_ref()?;
        let rest = b.strip_prefix("Linux version ")?;
        rest.split_whitespace().next().map(str::to_string)
    }

    /// A `.modinfo` value ("vermagic", "name", "depends"...).
    pub fn modinfo(&self, key: &str) -> Option<&str> {
        self.modinfo
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where in the file the byte at `symbol + offset` is, checking that the
    /// `len` bytes from there lie inside the symbol's section (and inside
    /// the symbol when it has a size).
    pub fn file_offset(&self, symbol: &str, offset: u64, len: u64) -> Result<u64, ImageError> {
        let sym = self
            .symbol(symbol)
            .ok_or_else(|| ImageError::NoSuchSymbol(symbol.to_string()))?;
        let bad = |why: String| ImageError::BadOffset(format!("{symbol}+{offset:#x}: {why}"));
        let end = offset.checked_add(len).ok_or_else(|| bad("overflows".into()))?;
        if sym.size > 0 && end > sym.size {
            return Err(bad(format!("past the end of the symbol ({} bytes)", sym.size)));
        }
        let sec = self
            .sections
            .iter()
            .find(|s| s.name == sym.section)
            .ok_or_else(|| bad(format!("symbol has no section ({:?})", sym.section)))?;
        let (start, size) = sec
            .file_range
            .ok_or_else(|| bad(format!("section {} has no bytes in the file", sec.name)))?;
        // vmlinux symbols are addresses; module symbols are section offsets.
        let base = if self.relocatable { 0 } else { sec.address };
        let rel = sym
            .address
            .checked_sub(base)
            .and_then(|r| r.checked_add(offset))
            .ok_or_else(|| bad("outside its section".into()))?;
        if rel.checked_add(len).is_none_or(|e| e > size) {
            return Err(bad(format!("outside section {}", sec.name)));
        }
        Ok(start + rel)
    }

    /// Relocation targets that touch `[start, start+len)` of `section`
    /// (section-relative offsets; empty for vmlinux).
    pub fn relocations_in(&self, section: &str, start: u64, len: u64) -> Vec<u64> {
        let Some(relocs) = self.relocations.get(section) else {
            return Vec::new();
        };
        let end = start.saturating_add(len);
        relocs
            .iter()
            .filter(|&&(off, size)| off < end && off.saturating_add(size) > start)
            .map(|&(off, _)| off)
            .collect()
    }
}

/// The OS's reason without Rust's " (os error N)" suffix ("No such file or
/// directory"), as C's `strerror` and Python's `OSError.strerror` word it.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf() {
        let err = KernelImage::parse(b"not an elf at all").err().unwrap();
        assert!(matches!(err, ImageError::NotElf(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "not an ELF file (it does not start with the ELF magic)"
        );
        let err = KernelImage::parse(b"\x7fELF\x02").err().unwrap();
        assert!(
            err.to_string()
                .starts_with("not an ELF file (its ELF header does not parse: "),
            "{err}"
        );
    }

    #[test]
    fn rejects_non_ppc64_elf() {
        // The test binary itself is an ELF for the build host (x86_64 here).
        let me = std::env::current_exe().unwrap();
        let err = KernelImage::open(&me).err().unwrap();
        assert!(matches!(err, ImageError::NotPpc64(_)), "{err}");
    }

    #[test]
    fn missing_file_names_the_path_once() {
        let err = KernelImage::open(Path::new("/nonexistent/vmlinux"))
            .err()
            .unwrap();
        assert!(matches!(err, ImageError::Io { errno: Some(2), .. }), "{err:?}");
        let msg = err.to_string();
        assert_eq!(msg.matches("/nonexistent/vmlinux").count(), 1, "{msg}");
        assert!(!msg.contains("os error"), "{msg}");
    }
}
