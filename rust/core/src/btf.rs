//! Kernel image reader: symbols from the ELF symtab (`object`) and struct
//! layouts from the `.BTF` section (`btf-rs`), plus the split BTF of a module
//! such as kvm-hv.ko.  Distro kernels ship BTF but no DWARF, so this is how the
//! gdb plugin learns `paca_struct`, `kvmppc_host_state`, `kvmppc_vcore`, ...
//! offsets without debuginfo and without running pahole.
//!
//! Nothing here knows about KVM: it answers "where is symbol S" and "what is
//! the layout of struct T".  Which fields a kernel has (and therefore which
//! model variant applies) is decided by the caller from these layouts.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use object::{Architecture, Object, ObjectSection, ObjectSymbol, SymbolKind};
use serde::Serialize;

/// Errors a user can cause (wrong file, stripped kernel, unknown struct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    Io(String),
    NotElf(String),
    NotPpc64(String),
    NoBtf,
    BadBtf(String),
    NoSuchType(String),
    NotAStruct(String),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Io(m) => write!(f, "cannot read kernel image: {m}"),
            ImageError::NotElf(m) => write!(f, "not an ELF file: {m}"),
            ImageError::NotPpc64(arch) => {
                write!(f, "not a ppc64 kernel (ELF architecture is {arch})")
            }
            ImageError::NoBtf => write!(f, "the image has no .BTF section"),
            ImageError::BadBtf(m) => write!(f, "cannot parse BTF: {m}"),
            ImageError::NoSuchType(n) => write!(f, "no type named {n} in BTF"),
            ImageError::NotAStruct(n) => write!(f, "{n} is not a struct or union"),
        }
    }
}

impl std::error::Error for ImageError {}

fn btf_err(e: btf_rs::Error) -> ImageError {
    ImageError::BadBtf(e.to_string())
}

/// What a member's type is once typedefs and qualifiers are stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Int,
    Bool,
    Enum,
    Ptr,
    Struct,
    Union,
    Array,
    Float,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Bool => "bool",
            Kind::Enum => "enum",
            Kind::Ptr => "ptr",
            Kind::Struct => "struct",
            Kind::Union => "union",
            Kind::Array => "array",
            Kind::Float => "float",
            Kind::Other => "other",
        }
    }
}

/// One member of a struct or union, as BTF declares it (not flattened).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberLayout {
    /// Empty for an anonymous struct/union member.
    pub name: String,
    /// Byte offset (bit offset / 8, rounded down for bitfields).
    pub offset: u64,
    pub bit_offset: u64,
    /// Some(bits) for a bitfield.
    pub bitfield_size: Option<u32>,
    /// Size in bytes of the member's type (for a bitfield: of its base type).
    pub size: u64,
    /// C spelling of the type, e.g. `struct kvm_vcpu *`, `u8`, `u64[7]`.
    pub type_name: String,
    pub kind: Kind,
    pub signed: bool,
    /// BTF id of the member's type with typedefs/qualifiers stripped; for
    /// arrays the element type, for pointers the pointed-to type.
    pub type_id: u32,
    /// Element count for arrays.
    pub array_len: Option<u64>,
    /// Element size for arrays.
    pub elem_size: Option<u64>,
    /// Kind of the element (arrays) or of the pointee (pointers).
    pub inner_kind: Option<Kind>,
}

/// The layout of one struct or union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StructLayout {
    pub name: String,
    pub is_union: bool,
    pub size: u64,
    pub members: Vec<MemberLayout>,
}

impl StructLayout {
    pub fn member(&self, name: &str) -> Option<&MemberLayout> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Pointer size of the targets we read (ppc64).
const PTR_SIZE: u64 = 8;

/// BTF type information of one kernel image (vmlinux, or vmlinux + a module's
/// split BTF).
pub struct Layouts {
    btf: Btf,
}

impl Layouts {
    pub fn from_bytes(btf: &[u8]) -> Result<Self, ImageError> {
        Ok(Layouts {
            btf: Btf::from_bytes(btf).map_err(btf_err)?,
        })
    }

    /// Layouts of a module: `split` is the module's `.BTF`, based on `self`.
    pub fn with_split(&self, split: &[u8]) -> Result<Self, ImageError> {
        Ok(Layouts {
            btf: Btf::from_split_bytes(split, &self.btf).map_err(btf_err)?,
        })
    }

    /// Strip typedefs, const, volatile, restrict and type tags.
    fn strip(&self, mut t: Type) -> Result<Type, ImageError> {
        for _ in 0..64 {
            let next = match &t {
                Type::Typedef(x) => self.btf.resolve_chained_type(x),
                Type::Volatile(x) | Type::Const(x) | Type::Restrict(x) => self.btf.resolve_chained_type(x),
                Type::TypeTag(x) => self.btf.resolve_chained_type(x),
                _ => return Ok(t),
            };
            t = next.map_err(btf_err)?;
        }
        Err(ImageError::BadBtf("typedef chain too long".into()))
    }

    fn name_of(&self, t: &dyn BtfType) -> String {
        self.btf.resolve_name(t).unwrap_or_default()
    }

    fn kind_of(t: &Type) -> (Kind, bool) {
        match t {
            Type::Int(i) if i.is_bool() => (Kind::Bool, false),
            Type::Int(i) => (Kind::Int, i.is_signed()),
            Type::Enum(e) => (Kind::Enum, e.is_signed()),
            Type::Enum64(e) => (Kind::Enum, e.is_signed()),
            Type::Ptr(_) => (Kind::Ptr, false),
            Type::Struct(_) => (Kind::Struct, false),
            Type::Union(_) => (Kind::Union, false),
            Type::Array(_) => (Kind::Array, false),
            Type::Float(_) => (Kind::Float, true),
            _ => (Kind::Other, false),
        }
    }

    /// Size in bytes of a type (typedefs followed).
    fn size_of(&self, t: &Type) -> Result<u64, ImageError> {
        let t = self.strip(t.clone())?;
        Ok(match &t {
            Type::Int(i) => i.size() as u64,
            Type::Ptr(_) => PTR_SIZE,
            Type::Struct(s) | Type::Union(s) => s.size() as u64,
            Type::Enum(e) => e.size() as u64,
            Type::Enum64(e) => e.size() as u64,
            Type::Float(f) => f.size() as u64,
            Type::Array(a) => {
                let elem = self.btf.resolve_chained_type(a).map_err(btf_err)?;
                self.size_of(&elem)? * a.len() as u64
            }
            _ => 0,
        })
    }

    /// C spelling of a type, close to what pahole prints.
    fn spell(&self, t: &Type, depth: u32) -> String {
        if depth > 16 {
            return "?".into();
        }
        let chained = |x: &dyn BtfType| -> Option<Type> {
            x.get_type_id()
                .and_then(|id| self.btf.resolve_type_by_id(id).ok())
        };
        match t {
            Type::Void => "void".into(),
            Type::Int(x) => self.name_of(x),
            Type::Float(x) => self.name_of(x),
            Type::Typedef(x) => self.name_of(x),
            Type::Struct(x) => format!("struct {}", self.name_of(x)).trim_end().to_string(),
            Type::Union(x) => format!("union {}", self.name_of(x)).trim_end().to_string(),
            Type::Enum(x) => format!("enum {}", self.name_of(x)).trim_end().to_string(),
            Type::Enum64(x) => format!("enum {}", self.name_of(x)).trim_end().to_string(),
            Type::Fwd(x) => {
                let kw = if x.is_union() { "union" } else { "struct" };
                format!("{kw} {}", self.name_of(x))
            }
            Type::Ptr(x) => match chained(x) {
                Some(Type::FuncProto(_)) => "fn *".into(),
                Some(inner) => format!("{} *", self.spell(&inner, depth + 1)),
                None => "void *".into(),
            },
            Type::Const(x) => match chained(x) {
                Some(inner) => format!("const {}", self.spell(&inner, depth + 1)),
                None => "const void".into(),
            },
            Type::Volatile(x) => match chained(x) {
                Some(inner) => format!("volatile {}", self.spell(&inner, depth + 1)),
                None => "volatile void".into(),
            },
            Type::Restrict(x) => match chained(x) {
                Some(inner) => self.spell(&inner, depth + 1),
                None => "void".into(),
            },
            Type::TypeTag(x) => match chained(x) {
                Some(inner) => self.spell(&inner, depth + 1),
                None => "void".into(),
            },
            Type::Array(a) => match chained(a) {
                Some(inner) => format!("{}[{}]", self.spell(&inner, depth + 1), a.len()),
                None => format!("?[{}]", a.len()),
            },
            Type::FuncProto(_) => "fn".into(),
            other => other.name().into(),
        }
    }

    fn member_layout(&self, m: &btf_rs::Member) -> Result<MemberLayout, ImageError> {
        let name = self.btf.resolve_name(m).unwrap_or_default();
        let raw_id = m.get_type_id().unwrap_or(0);
        let raw = self.btf.resolve_type_by_id(raw_id).map_err(btf_err)?;
        let spelled = self.spell(&raw, 0);
        // Follow typedef/qualifier chains by id so that we know the id of the
        // stripped type (needed to fetch anonymous struct layouts later).
        let mut id = raw_id;
        let mut t = raw;
        for _ in 0..64 {
            let next = match &t {
                Type::Typedef(x) => x.get_type_id(),
                Type::Volatile(x) | Type::Const(x) | Type::Restrict(x) => x.get_type_id(),
                Type::TypeTag(x) => x.get_type_id(),
                _ => None,
            };
            match next {
                Some(n) => {
                    id = n;
                    t = self.btf.resolve_type_by_id(n).map_err(btf_err)?;
                }
                None => break,
            }
        }
        let (kind, signed) = Self::kind_of(&t);
        let size = self.size_of(&t)?;
        let (mut type_id, mut array_len, mut elem_size, mut inner_kind) = (id, None, None, None);
        match &t {
            Type::Array(a) => {
                let elem_id = a.get_type_id().unwrap_or(0);
                let elem = self.btf.resolve_type_by_id(elem_id).map_err(btf_err)?;
                let (eid, estripped) = self.strip_with_id(elem_id, elem)?;
                array_len = Some(a.len() as u64);
                elem_size = Some(self.size_of(&estripped)?);
                inner_kind = Some(Self::kind_of(&estripped).0);
                type_id = eid;
            }
            Type::Ptr(p) => {
                if let Some(pid) = p.get_type_id() {
                    if let Ok(pt) = self.btf.resolve_type_by_id(pid) {
                        let (tid, stripped) = self.strip_with_id(pid, pt)?;
                        inner_kind = Some(Self::kind_of(&stripped).0);
                        type_id = tid;
                    }
                }
            }
            _ => {}
        }
        Ok(MemberLayout {
            name,
            offset: (m.bit_offset() / 8) as u64,
            bit_offset: m.bit_offset() as u64,
            bitfield_size: m.bitfield_size().filter(|&b| b != 0),
            size,
            type_name: spelled,
            kind,
            signed,
            type_id,
            array_len,
            elem_size,
            inner_kind,
        })
    }

    fn strip_with_id(&self, mut id: u32, mut t: Type) -> Result<(u32, Type), ImageError> {
        for _ in 0..64 {
            let next = match &t {
                Type::Typedef(x) => x.get_type_id(),
                Type::Volatile(x) | Type::Const(x) | Type::Restrict(x) => x.get_type_id(),
                Type::TypeTag(x) => x.get_type_id(),
                _ => return Ok((id, t)),
            };
            match next {
                Some(n) => {
                    id = n;
                    t = self.btf.resolve_type_by_id(n).map_err(btf_err)?;
                }
                None => return Ok((id, t)),
            }
        }
        Err(ImageError::BadBtf("typedef chain too long".into()))
    }

    fn layout_of(&self, name: &str, t: &Type) -> Result<StructLayout, ImageError> {
        let (s, is_union) = match t {
            Type::Struct(s) => (s, false),
            Type::Union(s) => (s, true),
            _ => return Err(ImageError::NotAStruct(name.to_string())),
        };
        let members = s
            .members
            .iter()
            .map(|m| self.member_layout(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StructLayout {
            name: name.to_string(),
            is_union,
            size: s.size() as u64,
            members,
        })
    }

    /// Layout of the named struct (or union).  Forward declarations are
    /// skipped: the first complete definition wins.
    pub fn struct_layout(&self, name: &str) -> Result<StructLayout, ImageError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| ImageError::NoSuchType(name.to_string()))?;
        let found = types
            .iter()
            .find(|t| matches!(t, Type::Struct(_) | Type::Union(_)));
        match found {
            Some(t) => self.layout_of(name, t),
            None if types.is_empty() => Err(ImageError::NoSuchType(name.to_string())),
            None => {
                // A typedef of a struct (e.g. `spinlock_t`).
                for t in types {
                    let s = self.strip(t)?;
                    if matches!(s, Type::Struct(_) | Type::Union(_)) {
                        return self.layout_of(name, &s);
                    }
                }
                Err(ImageError::NotAStruct(name.to_string()))
            }
        }
    }

    /// Layout of a struct by BTF id (anonymous structs and unions).
    pub fn layout_by_id(&self, id: u32) -> Result<StructLayout, ImageError> {
        let t = self
            .btf
            .resolve_type_by_id(id)
            .map_err(|_| ImageError::NoSuchType(format!("#{id}")))?;
        let (_, t) = self.strip_with_id(id, t)?;
        let name = t.as_btf_type().map(|x| self.name_of(x)).unwrap_or_default();
        self.layout_of(&name, &t)
    }

    /// Whether a named type exists at all (struct, union, typedef, enum...).
    pub fn has_type(&self, name: &str) -> bool {
        self.btf
            .resolve_ids_by_name(name)
            .map(|v| !v.is_empty())
            .unwrap_or(false)
    }
}

/// A symbol from an ELF symtab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symbol {
    pub address: u64,
    pub size: u64,
    /// Section name (what add-symbol-file / module sections are keyed by).
    pub section: String,
    pub local: bool,
}

/// What we keep of a kernel ELF image: architecture, symbols, BTF, banner.
pub struct KernelImage {
    pub machine: String,
    pub little_endian: bool,
    pub is_64: bool,
    pub symbols: HashMap<String, Symbol>,
    pub btf: Option<Vec<u8>>,
    /// `linux_banner` text, if the symbol and its data are in the file.
    pub banner: Option<String>,
    pub has_debug_info: bool,
}

fn arch_name(a: Architecture) -> String {
    format!("{a:?}")
}

impl KernelImage {
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let data = std::fs::read(path).map_err(|e| ImageError::Io(format!("{}: {e}", path.display())))?;
        Self::parse(&data)
    }

    /// Parse an ELF image (vmlinux or a decompressed .ko).  Only ppc64 is
    /// accepted: the plugin reads PACAs, which exist nowhere else.
    pub fn parse(data: &[u8]) -> Result<Self, ImageError> {
        let file = object::File::parse(data).map_err(|e| ImageError::NotElf(e.to_string()))?;
        let arch = file.architecture();
        if arch != Architecture::PowerPc64 {
            return Err(ImageError::NotPpc64(arch_name(arch)));
        }
        let mut section_names = HashMap::new();
        for s in file.sections() {
            section_names.insert(s.index(), s.name().unwrap_or("").to_string());
        }
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
                .and_then(|i| section_names.get(&i).cloned())
                .unwrap_or_default();
            // Local labels can repeat across files; the first global wins,
            // else the first local.
            let new = Symbol {
                address: sym.address(),
                size: sym.size(),
                section,
                local: sym.is_local(),
            };
            match symbols.get(name) {
                Some(old) if !(old.local && !new.local) => {}
                _ => {
                    symbols.insert(name.to_string(), new);
                }
            }
        }
        let btf = file
            .section_by_name(".BTF")
            .and_then(|s| s.uncompressed_data().ok())
            .map(|d| d.into_owned());
        let banner = symbols.get("linux_banner").and_then(|sym| {
            file.sections()
                .find_map(|s| {
                    let size = if sym.size > 0 { sym.size } else { 256 };
                    s.data_range(sym.address, size).ok().flatten().or_else(|| {
                        // the symbol may be shorter than 256 bytes from the end
                        let end = s.address() + s.size();
                        if sym.address >= s.address() && sym.address < end {
                            s.data_range(sym.address, end - sym.address).ok().flatten()
                        } else {
                            None
                        }
                    })
                })
                .map(|bytes| {
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    String::from_utf8_lossy(&bytes[..end]).trim_end().to_string()
                })
        });
        let has_debug_info = file.section_by_name(".debug_info").is_some();
        Ok(KernelImage {
            machine: arch_name(arch),
            little_endian: file.is_little_endian(),
            is_64: file.is_64(),
            symbols,
            btf,
            banner,
            has_debug_info,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf() {
        let err = KernelImage::parse(b"not an elf at all").err().unwrap();
        assert!(matches!(err, ImageError::NotElf(_)), "{err}");
    }

    #[test]
    fn rejects_non_ppc64_elf() {
        // The test binary itself is an ELF for the build host (x86_64 here).
        let me = std::env::current_exe().unwrap();
        let err = KernelImage::open(&me).err().unwrap();
        assert!(matches!(err, ImageError::NotPpc64(_)), "{err}");
    }

    #[test]
    fn missing_file_is_io_error() {
        let err = KernelImage::open(Path::new("/nonexistent/vmlinux"))
            .err()
            .unwrap();
        assert!(matches!(err, ImageError::Io(_)));
    }

    #[test]
    fn garbage_btf_is_an_error_not_a_panic() {
        assert!(Layouts::from_bytes(&[0u8; 64]).is_err());
        assert!(Layouts::from_bytes(&[]).is_err());
    }

    /// The kernel `pyvcore lab setup` unpacked (its manifest), or $PYVCORE_VMLINUX.
    fn lab_vmlinux() -> Option<String> {
        if let Ok(p) = std::env::var("PYVCORE_VMLINUX") {
            return Some(p);
        }
        let cache = std::env::var("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache")))
            .ok()?;
        let manifest = std::fs::read_to_string(cache.join("pyvcore/kernel/current.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&manifest).ok()?;
        let p = v.get("vmlinux")?.as_str()?.to_string();
        Path::new(&p).is_file().then_some(p)
    }

    /// Real-kernel test: the lab's vmlinux (Python's tests/test_btf.py compares
    /// every layout with pahole; this checks the Rust side alone).
    #[test]
    fn real_vmlinux_layouts() {
        let Some(path) = lab_vmlinux() else {
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
        // Debian 6.12 offsets measured in the lab (LAB_NOTES); other kernels differ.
        if img.release().as_deref().unwrap_or("").starts_with("6.12.") {
            let paca = l.struct_layout("paca_struct").unwrap();
            assert_eq!(paca.member("kvm_hstate").unwrap().offset, 664);
            assert_eq!(paca.size, 1280);
            assert_eq!(ptid.offset, 62);
            assert_eq!(vc.offset, 72);
        }
    }
}
