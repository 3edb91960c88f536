//! Small BTF sections built by hand: the crafted inputs of the reader's
//! tests and the seeds of its fuzz targets.  The encoding is the kernel's
//! (include/uapi/linux/btf.h): a 24-byte header, `struct btf_type` records
//! with their kind-specific tails, then the string section.

/// BTF kinds used here (`BTF_KIND_*`).
pub const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
pub const KIND_ARRAY: u32 = 3;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_TYPEDEF: u32 = 8;

/// Builder of one little-endian base BTF section; type ids start at 1.
#[derive(Debug, Clone)]
pub struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Default for BtfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BtfBuilder {
    pub fn new() -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    /// The id the next type will get.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    fn name(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn put(&mut self, words: &[u32]) -> u32 {
        for w in words {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | (vlen & 0xffff)
    }

    /// An unsigned integer of `size` bytes.
    pub fn int(&mut self, name: &str, size: u32) -> u32 {
        let n = self.name(name);
        self.put(&[n, Self::info(KIND_INT, 0), size, size * 8])
    }

    pub fn ptr(&mut self, target: u32) -> u32 {
        self.put(&[0, Self::info(KIND_PTR, 0), target])
    }

    pub fn typedef(&mut self, name: &str, target: u32) -> u32 {
        let n = self.name(name);
        self.put(&[n, Self::info(KIND_TYPEDEF, 0), target])
    }

    /// `elem[nelems]`; the index type is `elem` too (only its id is kept).
    pub fn array(&mut self, elem: u32, nelems: u32) -> u32 {
        self.put(&[0, Self::info(KIND_ARRAY, 0), 0, elem, elem, nelems])
    }

    /// A struct of `size` bytes; members are (name, type id, byte offset).
    pub fn structure(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let n = self.name(name);
        let mut words = vec![n, Self::info(KIND_STRUCT, members.len() as u32), size];
        for &(m, ty, off) in members {
            let mn = self.name(m);
            words.extend_from_slice(&[mn, ty, off * 8]);
        }
        self.put(&words)
    }

    /// The section bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.types.len() + self.strings.len());
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]); // version 1, flags 0
        let words = [
            24,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ];
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}
