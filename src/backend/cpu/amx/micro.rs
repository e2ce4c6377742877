//! The 32 x 32 block products of packed panels (pack.rs), by the AMX tile unit or by a scalar model of it.
//!
//! Each block is the sum of the six split products whose parts add up to at least 2^-16 of the leading one,
//! A_i · B_j for i + j <= 2; the three left out are below 2^-24 relative, f32's own rounding. Every product of two
//! bf16 values is exact in f32, so the block is f32-accurate.

#[cfg(test)]
use super::pack::TILE;
use super::pack::{KBLOCK, PANEL};

/// Values after the last panel of a packed operand that the AMX block may read (and ignores).
pub(crate) const SPARE: usize = KBLOCK;

/// f32 values of one 32 x 32 block (row stride 32).
pub(crate) const BLOCK: usize = PANEL * PANEL;

/// The split products, (A part, B part), in the order the AMX block runs them.
#[cfg(test)]
const TERMS: [(usize, usize); 6] = [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (0, 2)];

/// Computes the 32 x 32 blocks of packed A panels times one packed B panel.
pub(crate) trait Micro: Sync {
    /// Block i, the product of A panel i and the B panel over `kblocks` k-blocks, into `c[i * BLOCK..][..BLOCK]`.
    /// `a` holds `a_panels` panels, `b` one, each `kblocks * KBLOCK` values, and each one spare k-block after them
    /// (see [`SPARE`]). The k-blocks are taken `kc` at a time for every block before the next `kc` (so that those
    /// of the B panel stay in L1 while the A panels pass), the partial blocks kept in `c`.
    fn products(&self, a: &[u16], a_panels: usize, b: &[u16], kblocks: usize, kc: usize, c: &mut [f32]);
}

/// The scalar model of `tdpbf16ps` (same packed layouts, same terms): tests the packing and blocking on any CPU.
#[cfg(test)]
pub(crate) struct Emulated;

#[cfg(test)]
impl Micro for Emulated {
    fn products(&self, a: &[u16], a_panels: usize, b: &[u16], kblocks: usize, _kc: usize, c: &mut [f32]) {
        let f = |v: u16| half::bf16::from_bits(v).to_f32();
        for i in 0..a_panels {
            let c = &mut c[i * BLOCK..][..BLOCK];
            c.fill(0.0);
            for kb in 0..kblocks {
                let pa = &a[(i * kblocks + kb) * KBLOCK..][..KBLOCK];
                let pb = &b[kb * KBLOCK..][..KBLOCK];
                for (ta, tb) in TERMS {
                    for (rh, ch) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let at = &pa[(ta * 2 + rh) * TILE..][..TILE];
                        let bt = &pb[(tb * 2 + ch) * TILE..][..TILE];
                        for r in 0..16 {
                            for col in 0..16 {
                                let acc = &mut c[(rh * 16 + r) * PANEL + ch * 16 + col];
                                for kp in 0..16 {
                                    *acc += f(at[r * 32 + 2 * kp]) * f(bt[kp * 32 + 2 * col]);
                                    *acc += f(at[r * 32 + 2 * kp + 1]) * f(bt[kp * 32 + 2 * col + 1]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The AMX tile unit. Only [`Amx::new`] makes one, and only where `detect::usable()` said yes.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Amx(());

#[cfg(target_arch = "x86_64")]
impl Amx {
    /// The tile unit, if this process may use it.
    pub(crate) fn new() -> Option<Amx> {
        super::detect::usable().then_some(Amx(()))
    }
}

/// Palette 1, all eight tiles 16 rows x 64 bytes (`ldtilecfg`'s 64-byte memory operand).
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

#[cfg(target_arch = "x86_64")]
impl Micro for Amx {
    fn products(&self, a: &[u16], a_panels: usize, b: &[u16], kblocks: usize, kc: usize, c: &mut [f32]) {
        // The asm reads whole panels and one spare k-block, and writes whole blocks: shorter slices would be
        // accesses past their ends.
        assert!(a.len() >= (a_panels * kblocks + 1) * KBLOCK && b.len() >= (kblocks + 1) * KBLOCK);
        assert!(c.len() >= a_panels * BLOCK && kc > 0);
        let mut cfg = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        // SAFETY: `Amx` exists only where the CPU has AMX and Linux granted the tile state; the configuration is a
        // valid palette-1 configuration in a 64-byte aligned, 64-byte long struct.
        unsafe { std::arch::asm!("ldtilecfg [{0}]", in(reg) &cfg, options(nostack, readonly)) };
        let mut kb0 = 0;
        while kb0 < kblocks {
            let nk = kc.min(kblocks - kb0);
            let pb = b[kb0 * KBLOCK..].as_ptr();
            for i in 0..a_panels {
                let pa = a[(i * kblocks + kb0) * KBLOCK..].as_ptr();
                let cb = c[i * BLOCK..].as_mut_ptr();
                // SAFETY: the tiles are configured above; pa and pb each point at `nk` k-blocks of KBLOCK
                // u16 followed by at least one more (checked against the slices' lengths above), read 6 KiB
                // per k-block in 1 KiB tiles of 16 rows x 64 bytes; cb is a 32 x 32 f32 block inside `c`
                // (checked above), read and written as four 16 x 64-byte tiles with a 128-byte row stride.
                unsafe {
                    if kb0 == 0 {
                        std::arch::asm!(
                            "tilezero tmm0",
                            "tilezero tmm1",
                            "tilezero tmm2",
                            "tilezero tmm3",
                            options(nostack, nomem)
                        );
                    } else {
                        std::arch::asm!(
                            "tileloadd tmm0, [{c} + {cs}*1]",
                            "tileloadd tmm1, [{c} + {cs}*1 + 64]",
                            "tileloadd tmm2, [{c} + {cs}*1 + 2048]",
                            "tileloadd tmm3, [{c} + {cs}*1 + 2112]",
                            c = in(reg) cb,
                            cs = in(reg) 128usize,
                            options(nostack, readonly)
                        );
                    }
                    k_loop(pa, pb, nk);
                    std::arch::asm!(
                        "tilestored [{c} + {cs}*1], tmm0",
                        "tilestored [{c} + {cs}*1 + 64], tmm1",
                        "tilestored [{c} + {cs}*1 + 2048], tmm2",
                        "tilestored [{c} + {cs}*1 + 2112], tmm3",
                        c = in(reg) cb,
                        cs = in(reg) 128usize,
                        options(nostack)
                    );
                }
            }
            kb0 += nk;
        }
        // SAFETY: releases the tile state configured above (no tile register is live past this point).
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Adds `kblocks` k-blocks of one block's products to the accumulators tmm0-3. Safety: see the call in
/// `Amx::products`; also reads one k-block past the last (the next k-block's first operands are loaded while the
/// last terms run), so the packed buffers carry one spare k-block at their end.
///
/// Register use: tmm0-3 accumulate C(row half, column half) = (0,0), (0,1), (1,0), (1,1); tmm4-5 hold the current
/// A part's row halves, tmm6-7 the current B part's column halves. The terms run in TERMS order; within a term the
/// four products are ordered so that the operand the next term replaces is finished first, and its load is issued
/// right after its last use, overlapping the remaining products.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn k_loop(pa: *const u16, pb: *const u16, kblocks: usize) {
    // SAFETY: see the caller.
    unsafe {
        std::arch::asm!(
            "tileloadd tmm4, [{pa} + {s}*1]",
            "tileloadd tmm5, [{pa} + {s}*1 + 1024]",
            "tileloadd tmm6, [{pb} + {s}*1]",
            "tileloadd tmm7, [{pb} + {s}*1 + 1024]",
            "2:",
            // (0, 0); next: B1
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{pb} + {s}*1 + 2048]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm7, [{pb} + {s}*1 + 3072]",
            // (0, 1); next: A1
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{pa} + {s}*1 + 2048]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{pa} + {s}*1 + 3072]",
            // (1, 1); next: B0
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{pb} + {s}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm7, [{pb} + {s}*1 + 1024]",
            // (1, 0); next: A2
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{pa} + {s}*1 + 4096]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{pa} + {s}*1 + 5120]",
            // (2, 0); next: A0 and B2
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{pa} + {s}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{pb} + {s}*1 + 4096]",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{pa} + {s}*1 + 1024]",
            "tileloadd tmm7, [{pb} + {s}*1 + 5120]",
            // (0, 2); next: the next k-block's A0 and B0
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{pa} + {s}*1 + 6144]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{pb} + {s}*1 + 6144]",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{pa} + {s}*1 + 7168]",
            "tileloadd tmm7, [{pb} + {s}*1 + 7168]",
            "add {pa}, 6144",
            "add {pb}, 6144",
            "dec {kb}",
            "jnz 2b",
            pa = inout(reg) pa => _,
            pb = inout(reg) pb => _,
            kb = inout(reg) kblocks => _,
            s = in(reg) 64usize,
            options(nostack, readonly),
        );
    }
}
