//! Struct layouts from a kernel's `.BTF` section (`btf-rs`), plus the split
//! BTF of a module such as kvm-hv.ko.  Distro kernels ship BTF but no DWARF,
//! so this is how the gdb side learns `paca_struct`, `kvmppc_host_state`,
//! `kvmppc_vcore`, ... offsets without debuginfo and without running pahole.
//!
//! Nothing here knows about KVM: it answers "what is the layout of struct
//! T".  Which fields a kernel has (and therefore which model variant
//! applies) is decided by the caller from these layouts.
//!
//! The BTF comes from a file the user names, so it is untrusted: every walk
//! over type references is iterative, bounded ([`MAX_CHAIN`],
//! [`MAX_ARRAY_DIMS`]) and detects cycles, and sizes are computed with
//! checked arithmetic.  A corrupt section gives a typed [`ImageError`].

use btf_rs::{Btf, BtfType, Type};
use serde::Serialize;

pub use crate::elf::Symbol;
pub use crate::image::{ImageError, KernelImage};

/// Longest typedef/const/volatile/restrict/type-tag chain followed (the
/// kernel's own are a handful long).
pub const MAX_CHAIN: u32 = 64;
/// Most array dimensions followed (the kernel's deepest are 3 or 4).
pub const MAX_ARRAY_DIMS: u32 = 32;

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

/// The next type id of a typedef or qualifier, None for anything else.
fn chained_id(t: &Type) -> Option<Option<u32>> {
    match t {
        Type::Typedef(x) => Some(x.get_type_id()),
        Type::Volatile(x) | Type::Const(x) | Type::Restrict(x) => Some(x.get_type_id()),
        Type::TypeTag(x) => Some(x.get_type_id()),
        _ => None,
    }
}

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

    fn by_id(&self, id: u32) -> Result<Type, ImageError> {
        self.btf.resolve_type_by_id(id).map_err(btf_err)
    }

    /// Follow typedefs, const, volatile, restrict and type tags from `id`
    /// (whose type is `t`) to the type they name: its id and the type.
    /// A chain that comes back to one of its ids, or is longer than
    /// [`MAX_CHAIN`], is a corrupt section.
    fn strip_with_id(&self, mut id: u32, mut t: Type) -> Result<(u32, Type), ImageError> {
        let mut seen = Vec::new();
        loop {
            let Some(next) = chained_id(&t) else {
                return Ok((id, t));
            };
            let Some(next) = next else {
                return Ok((id, t));
            };
            if next == id || seen.contains(&next) {
                return Err(ImageError::Cycle {
                    id: next,
                    what: "typedef/qualifier chain",
                });
            }
            if seen.len() as u32 >= MAX_CHAIN {
                return Err(ImageError::TooDeep {
                    id,
                    what: "typedefs/qualifiers",
                    limit: MAX_CHAIN,
                });
            }
            seen.push(id);
            id = next;
            t = self.by_id(id)?;
        }
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

    /// Size in bytes of type `id` (typedefs followed, arrays multiplied out),
    /// iteratively: an array of itself is a [`ImageError::Cycle`], more than
    /// [`MAX_ARRAY_DIMS`] nested arrays [`ImageError::TooDeep`], a product
    /// beyond 64 bits [`ImageError::SizeOverflow`].
    fn size_of(&self, id: u32, t: Type) -> Result<u64, ImageError> {
        let (first, mut t) = self.strip_with_id(id, t)?;
        let mut count: u64 = 1;
        let mut arrays: Vec<u32> = Vec::new();
        let mut id = first;
        loop {
            let base = match &t {
                Type::Int(i) => i.size() as u64,
                Type::Ptr(_) => PTR_SIZE,
                Type::Struct(s) | Type::Union(s) => s.size() as u64,
                Type::Enum(e) => e.size() as u64,
                Type::Enum64(e) => e.size() as u64,
                Type::Float(f) => f.size() as u64,
                Type::Array(a) => {
                    if arrays.contains(&id) {
                        return Err(ImageError::Cycle {
                            id,
                            what: "array of itself",
                        });
                    }
                    if arrays.len() as u32 >= MAX_ARRAY_DIMS {
                        return Err(ImageError::TooDeep {
                            id: first,
                            what: "arrays",
                            limit: MAX_ARRAY_DIMS,
                        });
                    }
                    arrays.push(id);
                    count = count
                        .checked_mul(a.len() as u64)
                        .ok_or(ImageError::SizeOverflow { id: first })?;
                    let elem = a.get_type_id().unwrap_or(0);
                    (id, t) = self.strip_with_id(elem, self.by_id(elem)?)?;
                    continue;
                }
                _ => 0,
            };
            return base
                .checked_mul(count)
                .ok_or(ImageError::SizeOverflow { id: first });
        }
    }

    /// C spelling of a type, close to what pahole prints.  Recursion is
    /// bounded by `depth` (a too deep or cyclic type spells as "?").
    fn spell(&self, t: &Type, depth: u32) -> String {
        if depth > 16 {
            return "?".into();
        }
        let chained = |x: &dyn BtfType| -> Option<Type> {
            x.get_type_id()
                .and_then(|id| self.btf.resolve_type_by_id(id).ok())
        };
        let inner = |x: &dyn BtfType, none: &str| match chained(x) {
            Some(inner) => self.spell(&inner, depth + 1),
            None => none.to_string(),
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
            Type::Const(x) => format!("const {}", inner(x, "void")),
            Type::Volatile(x) => format!("volatile {}", inner(x, "void")),
            Type::Restrict(x) => inner(x, "void"),
            Type::TypeTag(x) => inner(x, "void"),
            Type::Array(a) => format!("{}[{}]", inner(a, "?"), a.len()),
            Type::FuncProto(_) => "fn".into(),
            other => other.name().into(),
        }
    }

    fn member_layout(&self, m: &btf_rs::Member) -> Result<MemberLayout, ImageError> {
        let name = self.btf.resolve_name(m).unwrap_or_default();
        let raw_id = m.get_type_id().unwrap_or(0);
        let raw = self.by_id(raw_id)?;
        let spelled = self.spell(&raw, 0);
        // The id of the stripped type is needed to fetch anonymous struct
        // layouts later.
        let (id, t) = self.strip_with_id(raw_id, raw)?;
        let (kind, signed) = Self::kind_of(&t);
        let size = self.size_of(id, t.clone())?;
        let (mut type_id, mut array_len, mut elem_size, mut inner_kind) = (id, None, None, None);
        match &t {
            Type::Array(a) => {
                let elem_id = a.get_type_id().unwrap_or(0);
                let (eid, estripped) = self.strip_with_id(elem_id, self.by_id(elem_id)?)?;
                array_len = Some(a.len() as u64);
                inner_kind = Some(Self::kind_of(&estripped).0);
                elem_size = Some(self.size_of(eid, estripped)?);
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
    /// skipped: the first complete definition wins; a typedef of a struct
    /// (e.g. `spinlock_t`) gives the struct.
    pub fn struct_layout(&self, name: &str) -> Result<StructLayout, ImageError> {
        let ids = self
            .btf
            .resolve_ids_by_name(name)
            .map_err(|_| ImageError::NoSuchType(name.to_string()))?;
        if ids.is_empty() {
            return Err(ImageError::NoSuchType(name.to_string()));
        }
        let mut types = Vec::with_capacity(ids.len());
        for &id in &ids {
            let t = self.by_id(id)?;
            if matches!(t, Type::Struct(_) | Type::Union(_)) {
                return self.layout_of(name, &t);
            }
            types.push((id, t));
        }
        for (id, t) in types {
            let (_, s) = self.strip_with_id(id, t)?;
            if matches!(s, Type::Struct(_) | Type::Union(_)) {
                return self.layout_of(name, &s);
            }
        }
        Err(ImageError::NotAStruct(name.to_string()))
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

#[cfg(test)]
#[path = "btf_tests.rs"]
mod tests;
