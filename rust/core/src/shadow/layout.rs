//! Where the watched fields are: byte offsets inside `paca_struct`,
//! `kvmppc_host_state`, `kvmppc_vcore` and `kvm_vcpu`, resolved from the
//! kernel's BTF by the same reader the gdb side uses ([`crate::btf`]), plus
//! the address of `paca_ptrs`.  Nothing here is hard-coded per kernel.

use crate::btf::{ImageError, KernelImage, Kind, Layouts, StructLayout};
use crate::consts::Variant;

use super::field::{CField, HField, VField};

/// One watched field: byte offset from the start of its struct, size in
/// bytes, signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<F> {
    pub field: F,
    pub offset: u64,
    pub size: u8,
    pub signed: bool,
}

/// Everything the shadow needs to find and decode the scheduler's state in
/// physical memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchLayout {
    pub variant: Variant,
    /// Virtual address of the `paca_ptrs` variable (`struct paca_struct **`).
    pub paca_ptrs: u64,
    /// `offsetof(struct paca_struct, kvm_hstate)`.
    pub hstate_offset: u64,
    pub hstate: Vec<Slot<HField>>,
    pub vcore: Vec<Slot<VField>>,
    pub vcpu: Vec<Slot<CField>>,
}

/// Offset, size and signedness of a dotted member path (`arch.ptid`),
/// looking through anonymous struct/union members the way C does.
pub fn member_path(
    layouts: &Layouts,
    top: &StructLayout,
    path: &str,
) -> Result<(u64, u64, bool), ImageError> {
    let mut layout = top.clone();
    let mut base = 0u64;
    let mut parts = path.split('.').peekable();
    while let Some(name) = parts.next() {
        let (off, m) = find_member(layouts, &layout, name)?
            .ok_or_else(|| ImageError::NoSuchType(format!("{}.{}", top.name, path)))?;
        base += off;
        if parts.peek().is_none() {
            return Ok((base, m.size, m.signed));
        }
        if !matches!(m.kind, Kind::Struct | Kind::Union) {
            return Err(ImageError::NotAStruct(format!("{}.{}", top.name, name)));
        }
        layout = layouts.layout_by_id(m.type_id)?;
    }
    Err(ImageError::NoSuchType(format!("{}.{}", top.name, path)))
}

type Found = Option<(u64, crate::btf::MemberLayout)>;

fn find_member(layouts: &Layouts, s: &StructLayout, name: &str) -> Result<Found, ImageError> {
    if let Some(m) = s.member(name) {
        return Ok(Some((m.offset, m.clone())));
    }
    for m in s.members.iter().filter(|m| m.name.is_empty()) {
        if matches!(m.kind, Kind::Struct | Kind::Union) {
            let inner = layouts.layout_by_id(m.type_id)?;
            if let Some((off, found)) = find_member(layouts, &inner, name)? {
                return Ok(Some((m.offset + off, found)));
            }
        }
    }
    Ok(None)
}

fn slots<F: Copy>(
    layouts: &Layouts,
    st: &StructLayout,
    wanted: &[(F, &str, bool)],
) -> Result<Vec<Slot<F>>, ImageError> {
    let mut out = Vec::new();
    for &(field, path, required) in wanted {
        match member_path(layouts, st, path) {
            Ok((offset, size, signed)) if matches!(size, 1 | 2 | 4 | 8) => out.push(Slot {
                field,
                offset,
                size: size as u8,
                signed,
            }),
            Ok(_) | Err(_) if !required => {}
            Ok((_, size, _)) => {
                return Err(ImageError::BadBtf(format!(
                    "{}.{path} is {size} bytes: not a scalar",
                    st.name
                )))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl WatchLayout {
    /// Resolve every watched field from the kernel's BTF (`layouts`) and the
    /// `paca_ptrs` symbol address.  Errors name the missing struct/member.
    pub fn resolve(layouts: &Layouts, paca_ptrs: u64) -> Result<Self, ImageError> {
        let paca = layouts.struct_layout("paca_struct")?;
        let (hstate_offset, _, _) = member_path(layouts, &paca, "kvm_hstate")?;
        let hs = layouts.struct_layout("kvmppc_host_state")?;
        let hstate = slots(
            layouts,
            &hs,
            &[
                (HField::InGuest, "in_guest", true),
                (HField::Napping, "napping", true),
                (HField::HwthreadReq, "hwthread_req", true),
                (HField::HwthreadState, "hwthread_state", true),
                (HField::HostIpi, "host_ipi", false),
                (HField::Ptid, "ptid", true),
                (HField::KvmVcpu, "kvm_vcpu", true),
                (HField::KvmVcore, "kvm_vcore", true),
            ],
        )?;
        let vc = layouts.struct_layout("kvmppc_vcore")?;
        let variant = if vc.member("entry_exit_map").is_some() {
            Variant::Modern
        } else {
            Variant::Seed
        };
        let vcore = slots(
            layouts,
            &vc,
            &[
                (VField::NRunnable, "n_runnable", true),
                (VField::NumThreads, "num_threads", true),
                (VField::EntryExitMap, "entry_exit_map", false),
                (VField::EntryExitCount, "entry_exit_count", false),
                (VField::NappingThreads, "napping_threads", true),
                (VField::FirstVcpuid, "first_vcpuid", true),
                (VField::Pcpu, "pcpu", true),
                (VField::VcoreState, "vcore_state", true),
                (VField::InGuest, "in_guest", true),
                (VField::Runner, "runner", true),
                (VField::Kvm, "kvm", false),
                (VField::NWoken, "n_woken", false),
                (VField::NapCount, "nap_count", false),
                (VField::Dpdes, "dpdes", false),
                // The timebase offset, for putting each event's tb on the
                // host's timebase (CoreState::host_tb); an older kernel
                // without tb_offset_applied is known only at offset 0.
                (VField::TbOffset, "tb_offset", false),
                (VField::TbOffsetApplied, "tb_offset_applied", false),
            ],
        )?;
        let cpu = layouts.struct_layout("kvm_vcpu")?;
        let vcpu = slots(
            layouts,
            &cpu,
            &[
                (CField::VcpuId, "vcpu_id", true),
                (CField::Cpu, "cpu", true),
                (CField::Vcore, "arch.vcore", true),
                (CField::Ptid, "arch.ptid", true),
                (CField::ThreadCpu, "arch.thread_cpu", false),
                (CField::State, "arch.state", false),
                (CField::Ceded, "arch.ceded", false),
                (CField::Trap, "arch.trap", false),
            ],
        )?;
        Ok(WatchLayout {
            variant,
            paca_ptrs,
            hstate_offset,
            hstate,
            vcore,
            vcpu,
        })
    }

    /// The same from a vmlinux with `.BTF` and a `paca_ptrs` symbol.  The
    /// vcore/vcpu types are in vmlinux's BTF because the real-mode KVM code
    /// (book3s_hv_builtin.c, book3s_hv_rm_*.c) is built in.
    pub fn from_image(image: &KernelImage) -> Result<Self, ImageError> {
        let sym = image
            .symbol("paca_ptrs")
            .ok_or_else(|| ImageError::NoSuchType("symbol paca_ptrs".to_string()))?;
        Self::resolve(&image.layouts()?, sym.address)
    }
}

/// The function (or assembly label) at a kernel text address: the nearest
/// symbol at or below it in vmlinux's `.text`.  Assembly labels such as
/// `kvmppc_hv_entry` have size 0 in the symtab, so sizes are not used.
pub struct Symbolizer {
    text: Vec<(u64, String)>,
}

impl Symbolizer {
    pub fn new(image: &KernelImage) -> Self {
        let mut text: Vec<(u64, String)> = image
            .symbols
            .iter()
            .filter(|(n, s)| s.section.starts_with(".text") && !n.starts_with('.') && !n.starts_with('$'))
            .map(|(n, s)| (s.address, n.clone()))
            .collect();
        text.sort();
        Symbolizer { text }
    }

    /// `name`, or None outside vmlinux's text (module space, guest code).
    pub fn name(&self, pc: u64) -> Option<&str> {
        let i = self.text.partition_point(|(a, _)| *a <= pc);
        let (start, name) = self.text.get(i.checked_sub(1)?)?;
        // Past the last text symbol by more than a page: not vmlinux text.
        if i == self.text.len() && pc - start > 0x10000 {
            return None;
        }
        Some(name.as_str())
    }
}
