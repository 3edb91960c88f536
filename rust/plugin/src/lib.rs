//! pyvcore's QEMU TCG plugin (plugin API v4, QEMU 10.0).  Thin on purpose:
//! it instruments every guest store, the few instructions of
//! [`pyvcore_core::shadow::insn`] and the entry of `kvmhv_commence_exit`
//! (its `trap` argument), and hands what falls in a watched
//! physical page to [`pyvcore_core::shadow::Shadow`], which decodes,
//! checks and records.  Layouts and symbols come from the vmlinux through
//! `pyvcore_core::btf` (the reader the gdb side uses).
//!
//! Arguments (`-plugin libpyvcore_plugin.so,KEY=VALUE,...`):
//! * `vmlinux=PATH` (required): the running kernel, with `.BTF`;
//! * `threads=N`: hardware threads per core (default 4);
//! * `log=PATH`: write the event log (format: `pyvcore_core::shadow`);
//! * `summary=PATH`: write the JSON summary at exit;
//! * `mode=all|kvm`: instrument stores of all code (default) or only of
//!   KVM and idle code (see [`kvm_ranges`]);
//! * `slack=X`: multiplier on the liveness bounds (default 100);
//! * `scenario=`, `qemu=`: copied into the log header.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use pyvcore_core::btf::KernelImage;
use pyvcore_core::shadow::{insn, Memory, Reg, Shadow, Symbolizer, WatchLayout, TB_FREQ_POWER8};
use qemu_plugin::install::{Args, Info, Value};
use qemu_plugin::plugin::{HasCallbacks, Register};
use qemu_plugin::{
    qemu_plugin_get_registers, qemu_plugin_outs, qemu_plugin_register_atexit_cb, CallbackFlags, MemRW,
    MemValue, PluginId, RegisterDescriptor, TranslationBlock, VCPUIndex,
};

/// Physical memory covered by the lock-free page filter (16 GiB).
const BITMAP_PAGES: u64 = 1 << 22;
/// The effective-address bits that real mode translates (the top nibble,
/// 0xc for the kernel's linear map, is ignored there).
const PC_MASK: u64 = 0x0fff_ffff_ffff_ffff;

/// Register handles (the same for every vCPU of one machine).
struct Regs {
    gpr: Vec<RegisterDescriptor<'static>>,
    lpidr: Option<RegisterDescriptor<'static>>,
    sdr1: Option<RegisterDescriptor<'static>>,
    tb: Option<RegisterDescriptor<'static>>,
}

// The descriptors are opaque handles QEMU gives out once per machine.
unsafe impl Send for Regs {}
unsafe impl Sync for Regs {}

fn read_u64(r: &RegisterDescriptor<'static>) -> Option<u64> {
    let b = r.read().ok()?;
    let mut le = [0u8; 8];
    let n = b.len().min(8);
    le[..n].copy_from_slice(&b[..n]);
    Some(u64::from_le_bytes(le))
}

struct Tracer {
    shadow: Mutex<Shadow>,
    /// One bit per watched 4 KiB physical page: the test every store pays.
    bitmap: Vec<AtomicU64>,
    generation: AtomicU64,
    regs: OnceLock<Regs>,
    /// Instruction ranges instrumented in `mode=kvm` (empty = all code).
    ranges: Vec<(u64, u64)>,
    /// `mode=kvm`: the shadow was seeded from memory (see [`Shadow::seed`]).
    seeded: std::sync::atomic::AtomicBool,
    summary: Option<String>,
    symbols: Symbolizer,
    /// `kvmhv_commence_exit`'s local entry (ELFv2: where callers sharing
    /// the TOC arrive, and the global entry falls through to), with the
    /// top nibble cleared: real-mode and virtual-mode PCs both match.
    commence_exit: Option<u64>,
    /// Stores seen, per vCPU (one cache line each: no sharing on the hot path).
    stores_seen: Vec<PaddedCounter>,
    started: Instant,
}

struct GuestMemory;

#[derive(Default)]
#[repr(align(64))]
struct PaddedCounter(AtomicU64);

unsafe extern "C" {
    // glib, from the QEMU binary the plugin is loaded into.
    fn g_byte_array_new() -> *mut qemu_plugin::sys::GByteArray;
    fn g_byte_array_free(array: *mut qemu_plugin::sys::GByteArray, free_segment: bool) -> *mut u8;
}

impl Memory for GuestMemory {
    /// `qemu_plugin_read_memory_vaddr` into a GByteArray glib allocated:
    /// QEMU resizes it (g_byte_array_set_size), so it must be a real one
    /// (qemu-plugin 10.1.0-v2's wrapper passes a stack struct and crashes).
    fn read(&mut self, vaddr: u64, buf: &mut [u8]) -> bool {
        // SAFETY: the array is glib's own, freed here; QEMU fills at most
        // `buf.len()` bytes and we copy no more than it holds.
        unsafe {
            let a = g_byte_array_new();
            if a.is_null() {
                return false;
            }
            let ok = qemu_plugin::sys::qemu_plugin_read_memory_vaddr(vaddr, a, buf.len());
            let n = ((*a).len as usize).min(buf.len());
            if ok && n == buf.len() {
                std::ptr::copy_nonoverlapping((*a).data, buf.as_mut_ptr(), n);
            }
            g_byte_array_free(a, true);
            ok && n == buf.len()
        }
    }
}

impl Tracer {
    #[inline]
    fn page_watched(&self, page: u64) -> bool {
        if page >= BITMAP_PAGES {
            return true; // outside the bitmap: let the shadow decide
        }
        self.bitmap[(page >> 6) as usize].load(Ordering::Relaxed) & (1 << (page & 63)) != 0
    }

    fn sync_bitmap(&self, s: &Shadow) {
        let Some(d) = s.decoder() else { return };
        if d.generation() == self.generation.load(Ordering::Relaxed) {
            return;
        }
        for w in &self.bitmap {
            w.store(0, Ordering::Relaxed);
        }
        for &p in d.pages() {
            if p < BITMAP_PAGES {
                self.bitmap[(p >> 6) as usize].fetch_or(1 << (p & 63), Ordering::Relaxed);
            }
        }
        self.generation.store(d.generation(), Ordering::Relaxed);
    }

    /// The timebase of the calling vCPU, in ticks (512 MHz): the `tb`
    /// register.  On ppc64 QEMU names the readable timebase (SPR 268,
    /// `spr_register(env, SPR_TBL, "TB", ...)` in target/ppc/helper_regs.c)
    /// `tb`; `tbl` is SPR 284, the hypervisor's write-only TBL, whose
    /// `env->spr` slot stays 0 — the 0 an earlier build read.  gdbstub.c's
    /// gdb_get_spr_reg reads `tb` through cpu_ppc_load_tbl (the virtual
    /// clock plus the timebase offset).  Without the register (another
    /// QEMU), the host's monotonic clock since the plugin started, at 512
    /// MHz: TCG's timebase follows the host clock, so durations agree.
    fn tb(&self) -> u64 {
        if let Some(v) = self.regs.get().and_then(|r| r.tb.as_ref()).and_then(read_u64) {
            return v;
        }
        (self.started.elapsed().as_nanos() as u64).saturating_mul(TB_FREQ_POWER8 / 1_000_000) / 1000
    }

    /// A store that passed the page filter.  The bytes given to the shadow
    /// are read back from memory under the shadow's lock, not the value the
    /// callback reports: under multi-threaded TCG two threads' callbacks can
    /// run in the other order than their stores, and the memory's current
    /// content keeps the shadow in memory order (two racing stores may then
    /// show as one change, never as a reordered pair).
    fn store(&self, cpu: usize, pc: u64, vaddr: u64, pa: u64, stored: &[u8]) {
        let Ok(mut s) = self.shadow.lock() else { return };
        if !s.overlaps(pa, stored.len() as u64) {
            return; // a neighbour of a watched field on the same page
        }
        let mut now = [0u8; 16];
        let n = stored.len();
        let bytes: &[u8] = if GuestMemory.read(vaddr, &mut now[..n]) {
            &now[..n]
        } else {
            stored
        };
        // Read under the lock (see `special`).
        let tb = self.tb();
        // This thread's LPIDR/SDR1 as QEMU holds them now: the one place a
        // sibling's copy of the per-core registers can be seen.
        if let Some(r) = self.regs.get() {
            if let Some(v) = r.lpidr.as_ref().and_then(read_u64) {
                s.register(cpu, pc, tb, Reg::Lpidr, v);
            }
            if let Some(v) = r.sdr1.as_ref().and_then(read_u64) {
                s.register(cpu, pc, tb, Reg::Sdr1, v);
            }
        }
        s.store(cpu, pc, tb, pa, bytes, &mut GuestMemory);
        self.sync_bitmap(&s);
    }

    /// `mode=kvm` sees no store of the boot code that fills `paca_ptrs`: on
    /// the first instrumented stores, read it (and what it points at) from
    /// memory instead, until it is there.
    fn seed(&self, cpu: usize, pc: u64) {
        let Ok(mut s) = self.shadow.lock() else { return };
        let tb = self.tb();
        if s.seed(cpu, pc, tb, &mut GuestMemory) {
            self.seeded.store(true, Ordering::Relaxed);
        }
        self.sync_bitmap(&s);
    }

    /// An instrumented `mtspr`/`msgsnd[p]`, or the entry of
    /// `kvmhv_commence_exit`, about to execute.
    fn special(&self, cpu: usize, pc: u64, reg: Reg, gpr: u32) {
        let Some(r) = self.regs.get() else { return };
        let Some(v) = r.gpr.get(gpr as usize).and_then(read_u64) else {
            return;
        };
        let v = match reg {
            Reg::Msgsnd | Reg::Msgsndp => insn::doorbell_target(reg, v),
            // `int trap`: the low word of r3.
            Reg::CommenceExit => v & 0xffff_ffff,
            _ => v,
        };
        // The TB is read under the shadow's lock, as for a store: the
        // shadow puts it on the host's timebase with the state every
        // callback before it left (CoreState::host_tb), so no other
        // thread's TBU40 write may fall between the read and that state.
        if let Ok(mut s) = self.shadow.lock() {
            let tb = self.tb();
            s.register(cpu, pc, tb, reg, v);
        }
    }

    fn finish(&self) {
        // At exit there is no current vCPU to read a register from: liveness
        // is judged up to the timebase the last event carried (the last,
        // not the highest: one read while a timebase offset was in force
        // is the guest's, and the shadow converts the end with the state
        // at the end).
        let Ok(mut s) = self.shadow.lock() else { return };
        let tb = s.last_event_tb();
        s.finish(tb);
        let mut sum = s.summary_with(|pc| self.symbols.name(pc).map(str::to_string));
        let seen: u64 = self.stores_seen.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        sum["stores_seen"] = seen.into();
        sum["seconds"] = self.started.elapsed().as_secs_f64().into();
        sum["mode"] = if self.ranges.is_empty() { "all" } else { "kvm" }.into();
        let tb_reg = self.regs.get().is_some_and(|r| r.tb.is_some());
        sum["tb_source"] = if tb_reg { "tb register" } else { "host clock" }.into();
        if let Some(p) = &self.summary {
            if let Err(e) = std::fs::write(p, sum.to_string()) {
                let _ = qemu_plugin_outs(format!("pyvcore plugin: cannot write {p}: {e}\n"));
            }
        }
    }
}

/// `mode=kvm`: the code whose stores are instrumented.  Every kernel address
/// past the vmlinux's text (`_etext`): modules, kvm.ko and kvm-hv.ko among
/// them, are loaded in the vmalloc area (0xc0003d... on the lab's 6.12 hash
/// MMU, not a fixed module region), and the vmlinux functions of KVM and of
/// the powernv idle code (names starting `kvm`, `__kvm`, `idle_`,
/// `power7_`, `pnv_`).  It misses stores from anything else: generic
/// helpers KVM calls (memset, the allocator), and stray stores from
/// unrelated code — the memory corruption `mode=all` exists to catch.
pub fn kvm_ranges(image: &KernelImage) -> Vec<(u64, u64)> {
    // Text symbols by address; an assembly label without `.size` (most of
    // book3s_hv_rmhandlers.S: kvmppc_hv_entry, kvm_start_guest...) reaches
    // to the next symbol.
    let mut text: Vec<(u64, u64, &str)> = image
        .symbols
        .iter()
        .filter(|(_, s)| s.section.starts_with(".text"))
        .map(|(n, s)| (s.address, s.size, n.as_str()))
        .collect();
    text.sort_unstable();
    let mut r: Vec<(u64, u64)> = Vec::new();
    for (k, &(addr, size, name)) in text.iter().enumerate() {
        if !["kvm", "__kvm", "idle_", "power7_", "pnv_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let next = text[k + 1..].iter().map(|t| t.0).find(|&a| a > addr);
        let end = if size > 0 {
            addr + size
        } else {
            next.unwrap_or(addr + 4)
        };
        r.push((addr, end));
    }
    let etext = image
        .symbol("_etext")
        .map_or(0xc008_0000_0000_0000, |s| s.address);
    r.push((etext, u64::MAX));
    r.sort_unstable();
    // Merge overlaps (aliases, nested labels): in_ranges looks at one range.
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn in_ranges(ranges: &[(u64, u64)], pc: u64) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= pc);
    i > 0 && pc < ranges[i - 1].1
}

#[derive(Default)]
struct Plugin {
    tracer: Option<Arc<Tracer>>,
}

fn arg(args: &Args, k: &str) -> Option<String> {
    args.parsed.get(k).map(|v| match v {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
    })
}

fn setup(args: &Args) -> Result<Tracer, String> {
    let vmlinux = arg(args, "vmlinux").ok_or("missing argument vmlinux=PATH")?;
    let image = KernelImage::open(Path::new(&vmlinux)).map_err(|e| e.to_string())?;
    let layout = WatchLayout::from_image(&image).map_err(|e| format!("{vmlinux}: {e}"))?;
    let threads: usize = arg(args, "threads")
        .unwrap_or("4".into())
        .parse()
        .map_err(|_| "threads=N: not a number")?;
    if !(1..=8).contains(&threads) {
        return Err(format!("threads={threads}: 1..8"));
    }
    let mut shadow = Shadow::new(layout, threads, TB_FREQ_POWER8);
    if let Some(x) = arg(args, "slack") {
        shadow.bounds.slack = x.parse().map_err(|_| format!("slack={x}: not a number"))?;
    }
    if let Some(p) = arg(args, "log") {
        let f = File::create(&p).map_err(|e| format!("log={p}: {e}"))?;
        let mut extra = serde_json::Map::new();
        for k in ["scenario", "qemu"] {
            if let Some(v) = arg(args, k) {
                extra.insert(k.into(), v.into());
            }
        }
        extra.insert("kernel".into(), image.release().unwrap_or_default().into());
        shadow.set_log(Box::new(BufWriter::with_capacity(1 << 20, f)), &extra);
    }
    let ranges = match arg(args, "mode").as_deref() {
        None | Some("all") => Vec::new(),
        Some("kvm") => kvm_ranges(&image),
        Some(m) => return Err(format!("mode={m}: all or kvm")),
    };
    Ok(Tracer {
        shadow: Mutex::new(shadow),
        bitmap: (0..BITMAP_PAGES / 64).map(|_| AtomicU64::new(0)).collect(),
        generation: AtomicU64::new(u64::MAX),
        regs: OnceLock::new(),
        ranges,
        seeded: std::sync::atomic::AtomicBool::new(false),
        summary: arg(args, "summary"),
        symbols: Symbolizer::new(&image),
        commence_exit: image
            .symbol("kvmhv_commence_exit")
            .map(|s| (s.address + s.local_entry) & PC_MASK),
        stores_seen: (0..64).map(|_| PaddedCounter::default()).collect(),
        started: Instant::now(),
    })
}

impl Register for Plugin {
    fn register(&mut self, id: PluginId, args: &Args, _info: &Info) -> qemu_plugin::Result<()> {
        let t = match setup(args) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                let _ = qemu_plugin_outs(format!("pyvcore plugin: {e}\n"));
                eprintln!("pyvcore plugin: {e}");
                std::process::exit(2);
            }
        };
        {
            let s = t.shadow.lock().expect("fresh lock");
            t.sync_bitmap(&s);
        }
        let at_exit = Arc::clone(&t);
        qemu_plugin_register_atexit_cb(id, move |_| at_exit.finish())?;
        self.tracer = Some(t);
        Ok(())
    }
}

impl HasCallbacks for Plugin {
    fn on_vcpu_init(&mut self, _id: PluginId, _vcpu: VCPUIndex) -> qemu_plugin::Result<()> {
        let Some(t) = &self.tracer else { return Ok(()) };
        if t.regs.get().is_some() {
            return Ok(());
        }
        let all = qemu_plugin_get_registers()?;
        if std::env::var_os("PYVCORE_PLUGIN_DEBUG").is_some() {
            let names: Vec<String> = all
                .iter()
                .map(|r| format!("{}:{:?}", r.name, r.feature))
                .collect();
            eprintln!("pyvcore plugin: registers {}", names.join(" "));
        }
        let mut by_name: HashMap<String, RegisterDescriptor<'static>> =
            all.into_iter().map(|r| (r.name.clone(), r)).collect();
        let gpr: Vec<_> = (0..32).filter_map(|i| by_name.remove(&format!("r{i}"))).collect();
        let regs = Regs {
            lpidr: by_name.remove("lpidr"),
            sdr1: by_name.remove("sdr1"),
            tb: by_name.remove("tb"),
            gpr,
        };
        if regs.gpr.len() != 32 || regs.lpidr.is_none() || regs.sdr1.is_none() || regs.tb.is_none() {
            eprintln!(
                "pyvcore plugin: registers missing (gpr {}, lpidr {}, sdr1 {}, tb {})\n",
                regs.gpr.len(),
                regs.lpidr.is_some(),
                regs.sdr1.is_some(),
                regs.tb.is_some()
            );
        }
        let _ = t.regs.set(regs);
        Ok(())
    }

    fn on_translation_block_translate(
        &mut self,
        _id: PluginId,
        tb: TranslationBlock,
    ) -> qemu_plugin::Result<()> {
        let Some(t) = &self.tracer else { return Ok(()) };
        for i in tb.instructions() {
            let pc = i.vaddr();
            let mut w = [0u8; 4];
            if t.commence_exit == Some(pc & PC_MASK) {
                // kvmhv_commence_exit(int trap): r3 is the trap (invariant 45).
                let t = Arc::clone(t);
                i.register_execute_callback_flags(
                    move |cpu| t.special(cpu as usize, pc, Reg::CommenceExit, 3),
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                );
            }
            if i.read_data(&mut w) == 4 {
                if let Some((reg, gpr)) = insn::decode(u32::from_le_bytes(w)) {
                    let t = Arc::clone(t);
                    i.register_execute_callback_flags(
                        move |cpu| t.special(cpu as usize, pc, reg, gpr),
                        CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                    );
                }
            }
            if !t.ranges.is_empty() && !in_ranges(&t.ranges, pc) {
                continue;
            }
            let t = Arc::clone(t);
            i.register_memory_access_callback_flags(
                move |cpu, info, vaddr| {
                    if let Some(c) = t.stores_seen.get(cpu as usize) {
                        c.0.fetch_add(1, Ordering::Relaxed);
                    }
                    if !t.ranges.is_empty() && !t.seeded.load(Ordering::Relaxed) {
                        t.seed(cpu as usize, pc);
                    }
                    let Some(hw) = info.hwaddr(vaddr) else { return };
                    if hw.is_io() {
                        return;
                    }
                    let pa = hw.hwaddr();
                    let len = 1u64 << info.size_shift();
                    if !t.page_watched(pa >> 12) && !t.page_watched((pa + len - 1) >> 12) {
                        return;
                    }
                    let mut buf = [0u8; 16];
                    let n = len.min(16) as usize;
                    let be = info.big_endian();
                    match info.value() {
                        MemValue::U8(v) => buf[0] = v,
                        MemValue::U16(v) => {
                            buf[..2].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
                        }
                        MemValue::U32(v) => {
                            buf[..4].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
                        }
                        MemValue::U64(v) => {
                            buf[..8].copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
                        }
                        MemValue::U128(v) => {
                            buf.copy_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
                        }
                    }
                    t.store(cpu as usize, pc, vaddr, pa, &buf[..n]);
                },
                MemRW::QEMU_PLUGIN_MEM_W,
                CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
            );
        }
        Ok(())
    }
}

qemu_plugin::register!(Plugin::default());
