mod kl;
use std::time::Instant;

const KBLOCK: usize = 3072; // u16 per panel k-block
const BLOCK: usize = 1024; // f32 per 32x32 block
static mut COFF: usize = 0;
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct A64([u16; 32]);

#[repr(C, align(64))]
struct Cfg([u8; 64]);

fn cfg() -> Cfg {
    let mut c = [0u8; 64];
    c[0] = 1;
    for t in 0..8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
    }
    Cfg(c)
}

type KL = unsafe fn(*const u16, *const u16, usize);

#[derive(Clone, Copy)]
struct Job<'a> {
    ap: &'a [u16],
    bp: &'a [u16],
    a_panels: usize,
    b_panels: usize,
    kb: usize,
    chunk: usize,
    kc: usize,
}

unsafe fn run_chunks(j: Job, kl: KL, c: &mut [f32], chunks: std::ops::Range<usize>) {
    let cf = cfg();
    std::arch::asm!("ldtilecfg [{0}]", in(reg) cf.0.as_ptr(), options(nostack, readonly));
    for ch in chunks {
        let i0 = ch * j.chunk;
        let i1 = (i0 + j.chunk).min(j.a_panels);
        let mut kb0 = 0;
        while kb0 < j.kb {
            let nk = j.kc.min(j.kb - kb0);
            for q in 0..j.b_panels {
                let pb = j.bp.as_ptr().add((q * j.kb + kb0) * KBLOCK);
                for i in i0..i1 {
                    let pa = j.ap.as_ptr().add((i * j.kb + kb0) * KBLOCK);
                    let cbase = {
                        let p = c.as_mut_ptr();
                        p.add((64 - (p as usize % 64)) % 64 / 4 + COFF)
                    };
                    let cb = cbase.add(((q * j.chunk) + (i - i0)) * BLOCK);
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
                            "tileloadd tmm0, [{c} + {cs}*1]", "tileloadd tmm1, [{c} + {cs}*1 + 64]",
                            "tileloadd tmm2, [{c} + {cs}*1 + 2048]", "tileloadd tmm3, [{c} + {cs}*1 + 2112]",
                            c = in(reg) cb, cs = in(reg) 128usize, options(nostack, readonly));
                    }
                    kl(pa, pb, nk);
                    std::arch::asm!(
                        "tilestored [{c} + {cs}*1], tmm0", "tilestored [{c} + {cs}*1 + 64], tmm1",
                        "tilestored [{c} + {cs}*1 + 2048], tmm2", "tilestored [{c} + {cs}*1 + 2112], tmm3",
                        c = in(reg) cb, cs = in(reg) 128usize, options(nostack));
                }
            }
            kb0 += nk;
        }
    }
    std::arch::asm!("tilerelease", options(nostack, nomem));
}

fn run(j: Job, kl: KL, threads: usize, cs: &mut [Vec<f32>]) {
    let nch = j.a_panels.div_ceil(j.chunk);
    std::thread::scope(|s| {
        let per = nch.div_ceil(threads);
        for (t, c) in cs.iter_mut().enumerate().take(threads) {
            let r = (t * per).min(nch)..((t + 1) * per).min(nch);
            s.spawn(move || unsafe { run_chunks(j, kl, c, r) });
        }
    });
}

fn perm() -> bool {
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1023 as libc::c_long, 18 as libc::c_long) };
    r == 0
}

fn main() {
    assert!(perm(), "no AMX permission");
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let reps: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(9);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
    for &(m, k, n) in &[(2048usize, 384usize, 1536usize), (2048, 1536, 384), (2048, 384, 1152)] {
        let (ap_n, bp_n, kb) = (m / 32, n / 32, k / 32);
        unsafe { COFF = std::env::var("COFF").map(|s| s.parse().unwrap()).unwrap_or(0) };
        let off: usize = std::env::var("OFF").map(|s| s.parse().unwrap()).unwrap_or(0);
        let mk = |len: usize, md: usize| -> Vec<A64> {
            let mut v = vec![A64([0u16; 32]); len / 32 + 2];
            let p = v.as_mut_ptr() as *mut u16;
            for i in 0..len + 32 {
                unsafe { *p.add(i) = 0x3f80 + (i % md) as u16 }
            }
            v
        };
        let apv = mk((ap_n * kb + 3) * KBLOCK, 7);
        let bpv = mk((bp_n * kb + 3) * KBLOCK, 5);
        let ap: &[u16] =
            unsafe { std::slice::from_raw_parts((apv.as_ptr() as *const u16).add(off), (ap_n * kb + 3) * KBLOCK) };
        let bp: &[u16] =
            unsafe { std::slice::from_raw_parts((bpv.as_ptr() as *const u16).add(off), (bp_n * kb + 3) * KBLOCK) };
        println!("ap % 64 = {}, bp % 64 = {}", ap.as_ptr() as usize % 64, bp.as_ptr() as usize % 64);
        let mut variants: Vec<(String, KL, usize, usize)> = vec![
            ("tdp_only".into(), kl::tdp_only, 4, 64),
            ("cur_fixedL1".into(), kl::cur_fixed, 4, 64),
            ("cur".into(), kl::cur, 4, 64),
            ("pf1".into(), kl::pf1, 4, 64),
            ("pf2".into(), kl::pf2, 4, 64),
            ("pf1a".into(), kl::pf1a, 4, 64),
            ("pf2a".into(), kl::pf2a, 4, 64),
            ("cur_c2".into(), kl::cur, 2, 64),
            ("pf1_c2".into(), kl::pf1, 2, 64),
            ("cur_c8".into(), kl::cur, 8, 64),
            ("pf1_c8".into(), kl::pf1, 8, 64),
            ("cur_kc2".into(), kl::cur, 4, 2),
            ("pf1a_kc2_c2".into(), kl::pf1a, 2, 2),
            ("pf1a_kc4_c4".into(), kl::pf1a, 4, 4),
        ];
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut out = vec![0f32; m * n];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len() + 1];
        let mut cs: Vec<Vec<f32>> = (0..threads).map(|_| vec![0f32; 8 * bp_n * BLOCK + 64]).collect();
        for _rep in 0..reps {
            for (vi, (_, kl, chunk, kc)) in variants.iter_mut().enumerate() {
                let j = Job { ap, bp, a_panels: ap_n, b_panels: bp_n, kb, chunk: *chunk, kc: *kc };
                let s = Instant::now();
                run(j, *kl, threads, &mut cs);
                times[vi].push(s.elapsed().as_secs_f64() * 1e3);
            }
            let s = Instant::now();
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
                );
            }
            times[variants.len()].push(s.elapsed().as_secs_f64() * 1e3);
        }
        let stat = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            (v[0], v[v.len() / 2])
        };
        let (tmin, _) = stat(&mut times[0].clone());
        println!("[{m}, {k}, {n}] threads={threads} reps={reps} (min / median ms, min as x of tdp_only)");
        for (vi, (name, _, _, _)) in variants.iter().enumerate() {
            let (mn, md) = stat(&mut times[vi]);
            println!("  {name:14} {mn:7.2} / {md:7.2}  {:5.2}x", mn / tmin);
        }
        let (mn, md) = stat(&mut times[variants.len()]);
        println!("  {:14} {mn:7.2} / {md:7.2}  {:5.2}x", "FMA gemm", mn / tmin);
    }
}
