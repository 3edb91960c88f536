//! The few Power ISA instructions the plugin instruments besides stores:
//! `mtspr` to LPIDR, SDR1 and DPDES, and `msgsnd`/`msgsndp`.  Encodings
//! from the Power ISA v2.07 (POWER8): X/XFX-form, primary opcode 31.

use super::field::Reg;

/// SPR numbers (Power ISA v2.07 book III; arch/powerpc/include/asm/reg.h).
pub const SPRN_SDR1: u32 = 25;
pub const SPRN_DPDES: u32 = 176;
pub const SPRN_LPID: u32 = 319;

/// What one instruction word is, for the plugin: which register event it
/// makes and which GPR holds the value (`mtspr`: RS; `msgsnd[p]`: RB).
pub fn decode(word: u32) -> Option<(Reg, u32)> {
    if word >> 26 != 31 {
        return None;
    }
    let xo = (word >> 1) & 0x3ff;
    let rs = (word >> 21) & 0x1f;
    let rb = (word >> 11) & 0x1f;
    match xo {
        // mtspr: the SPR number's two 5-bit halves are swapped in the word.
        467 => {
            let spr = ((word >> 16) & 0x1f) | (((word >> 11) & 0x1f) << 5);
            match spr {
                SPRN_LPID => Some((Reg::MtLpidr, rs)),
                SPRN_SDR1 => Some((Reg::MtSdr1, rs)),
                SPRN_DPDES => Some((Reg::MtDpdes, rs)),
                _ => None,
            }
        }
        206 => Some((Reg::Msgsnd, rb)),
        142 => Some((Reg::Msgsndp, rb)),
        _ => None,
    }
}

/// The target a doorbell names in RB: `msgsnd` the PIR tag (bits 50:63,
/// DBELL_PROCIDTAG_MASK 0x3fff in QEMU's target/ppc/excp_helper.c),
/// `msgsndp` the thread (TIR, bits 57:63).
pub fn doorbell_target(reg: Reg, rb: u64) -> u64 {
    match reg {
        Reg::Msgsnd => rb & 0x3fff,
        _ => rb & 0x7f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_kernels_encodings() {
        // mtspr SPRN_LPID,r3 / mtspr SPRN_SDR1,r6 / mtspr SPRN_DPDES,r8 as
        // objdump shows them in Debian 6.12 vmlinux (kvmppc_hv_entry, the
        // doorbell IPI code).
        assert_eq!(decode(0x7c7f4ba6), Some((Reg::MtLpidr, 3)));
        assert_eq!(decode(0x7cd903a6), Some((Reg::MtSdr1, 6)));
        assert_eq!(decode(0x7d102ba6), Some((Reg::MtDpdes, 8)));
        assert_eq!(decode(0x7c1f4ba6), Some((Reg::MtLpidr, 0)));
        assert_eq!(decode(0x7c00499c), Some((Reg::Msgsnd, 9)));
        // msgsndp r9 (the lab guest's 0x7c00491c), msgsnd r3.
        assert_eq!(decode(0x7c00491c), Some((Reg::Msgsndp, 9)));
        assert_eq!(decode(0x7c00199c), Some((Reg::Msgsnd, 3)));
        // mtspr SPRN_LPCR (318) and mfspr SPRN_LPID are not events.
        assert_eq!(decode(0x7c7e4ba6), None);
        assert_eq!(decode(0x7c7f4aa6), None);
        assert_eq!(decode(0x60000000), None);
        assert_eq!(doorbell_target(Reg::Msgsndp, 5 << 27 | 2), 2);
        assert_eq!(doorbell_target(Reg::Msgsnd, 5 << 27 | 0x9), 9);
    }
}
