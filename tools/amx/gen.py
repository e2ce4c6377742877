# Generates src/kl.rs: the k-loop variants timed by src/main.rs, as inline asm (the first, `cur`, is micro.rs's
# schedule; `pf*` add prefetcht0 of the next k-blocks; `cur_fixed` reads one k-block over and over, from L1).
SCHED = [  # current micro.rs schedule: list of ('t', c, a, b) or ('l', reg, base, off)
"t 0 4 6","t 2 5 6","l 6 pb 2048","t 1 4 7","t 3 5 7","l 7 pb 3072",
"t 0 4 6","t 1 4 7","l 4 pa 2048","t 2 5 6","t 3 5 7","l 5 pa 3072",
"t 0 4 6","t 2 5 6","l 6 pb 0","t 1 4 7","t 3 5 7","l 7 pb 1024",
"t 0 4 6","t 1 4 7","l 4 pa 4096","t 2 5 6","t 3 5 7","l 5 pa 5120",
"t 0 4 6","t 1 4 7","l 4 pa 0","t 2 5 6","l 6 pb 4096","t 3 5 7","l 5 pa 1024","l 7 pb 5120",
"t 0 4 6","t 1 4 7","l 4 pa 6144","t 2 5 6","l 6 pb 6144","t 3 5 7","l 5 pa 7168","l 7 pb 7168",
]
def kloop(name, advance=True, pf=None, pfb=True, nt=False):
    lines = ['"tileloadd tmm4, [{pa} + {s}*1]"','"tileloadd tmm5, [{pa} + {s}*1 + 1024]"',
             '"tileloadd tmm6, [{pb} + {s}*1]"','"tileloadd tmm7, [{pb} + {s}*1 + 1024]"','"2:"']
    # prefetch lines: A next (96 lines), B next (96 lines), spread after TDPs
    pfl = []
    if pf is not None:
        for x in range(96):
            pfl.append(f'"prefetcht0 [{{pa}} + {pf*6144 + 64*x}]"')
        if pfb:
            for x in range(96):
                pfl.append(f'"prefetcht0 [{{pb}} + {pf*6144 + 64*x}]"')
    ntdp = sum(1 for s in SCHED if s[0]=='t')
    per = -(-len(pfl)//ntdp) if pfl else 0
    for s in SCHED:
        p = s.split()
        if p[0]=='t':
            lines.append(f'"tdpbf16ps tmm{p[1]}, tmm{p[2]}, tmm{p[3]}"')
            for _ in range(per):
                if pfl: lines.append(pfl.pop(0))
        else:
            off = int(p[3]); 
            if not advance and off >= 6144: off -= 6144
            ld = 'tileloaddt1' if nt else 'tileloadd'
            lines.append(f'"{ld} tmm{p[1]}, [{{{p[2]}}} + {{s}}*1 + {off}]"')
    if advance:
        lines += ['"add {pa}, 6144"','"add {pb}, 6144"']
    lines += ['"dec {kb}"','"jnz 2b"']
    body = ",\n        ".join(lines)
    return f'''
#[inline(never)]
pub unsafe fn {name}(pa: *const u16, pb: *const u16, kblocks: usize) {{
    std::arch::asm!(
        {body},
        pa = inout(reg) pa => _, pb = inout(reg) pb => _, kb = inout(reg) kblocks => _, s = in(reg) 64usize,
        options(nostack, readonly));
}}
'''
def tdp_only():
    t = [f'"tdpbf16ps tmm{s.split()[1]}, tmm{s.split()[2]}, tmm{s.split()[3]}"' for s in SCHED if s[0]=='t']
    body = ",\n        ".join(['"2:"'] + t + ['"dec {kb}"','"jnz 2b"'])
    return f'''
#[inline(never)]
pub unsafe fn tdp_only(_pa: *const u16, _pb: *const u16, kblocks: usize) {{
    std::arch::asm!({body}, kb = inout(reg) kblocks => _, options(nostack, nomem));
}}
'''
src = "#![allow(clippy::all)]\n" + tdp_only() + kloop("cur") + kloop("cur_fixed", advance=False) + kloop("pf1", pf=1) + kloop("pf2", pf=2) + kloop("pf1a", pf=1, pfb=False) + kloop("pf2a", pf=2, pfb=False)
open("src/kl.rs","w").write(src)
