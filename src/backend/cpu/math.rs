//! Scalar math written to vectorise: branch-free, no libm calls, `#[inline(always)]` so the kernels that use it
//! compile it with their SIMD features. `mul_add` becomes one FMA instruction in the AVX2+FMA copies (see
//! `simd.rs`); only the portable fallback, for CPUs without FMA, pays a library call for it.

/// Smallest argument with a normal result.
const EXP_LO: f32 = -87.336_55;
/// Largest argument the bit trick below takes (n = 127); f32's own limit is 88.72.
const EXP_HI: f32 = 88.376;

/// e^x for x in [EXP_LO, EXP_HI] (NaN gives NaN): Cephes' two-part reduction and polynomial, with 2^n built by
/// shifting the rounding constant's low bits into the exponent.
#[inline(always)]
fn exp_core(x: f32) -> f32 {
    // 1.5·2²³ + 127: after the add, the low mantissa bits hold n + 127.
    const MAGIC: f32 = 12_583_039.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let t = x.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    y * f32::from_bits(t.to_bits() << 23)
}

/// e^x for f32 within a few ulp; 0 below the smallest normal result, +inf above 88.38 (a little before f32's
/// own overflow at 88.72, which no caller here gets near), NaN for NaN. Selects rather than `min`/`max` so NaN
/// stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let xc = if x < EXP_LO { EXP_LO } else { x };
    let xc = if xc > EXP_HI { EXP_HI } else { xc };
    let v = exp_core(xc);
    let v = if x < EXP_LO { 0.0 } else { v };
    if x > EXP_HI {
        f32::INFINITY
    } else {
        v
    }
}

/// e^x for x <= 0: [`exp`] without the overflow side (softmax and attention exponentiate x - max).
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    let v = exp_core(if x < EXP_LO { EXP_LO } else { x });
    if x < EXP_LO {
        0.0
    } else {
        v
    }
}

/// out[i] = f(x[i]), unrolled 32 wide so several independent vectors are in flight: the kernels here are long
/// dependency chains, and one vector at a time leaves the FMA units waiting on latency.
#[inline(always)]
pub(crate) fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    const U: usize = 32;
    let mut xc = x.chunks_exact(U);
    let mut oc = out.chunks_exact_mut(U);
    for (xs, os) in (&mut xc).zip(&mut oc) {
        for i in 0..U {
            os[i] = f(xs[i]);
        }
    }
    for (o, v) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o = f(*v);
    }
}

/// x[i] = f(x[i]), unrolled like [`map`].
#[inline(always)]
pub(crate) fn map_in_place(x: &mut [f32], f: impl Fn(f32) -> f32) {
    const U: usize = 32;
    let mut xc = x.chunks_exact_mut(U);
    for xs in &mut xc {
        for v in xs.iter_mut() {
            *v = f(*v);
        }
    }
    for v in xc.into_remainder() {
        *v = f(*v);
    }
}

/// e^x for -87 <= x <= 0 to about 2e-7 relative: a degree-6 Taylor polynomial and one-step range reduction,
/// enough where the result only scales a small correction (GELU's erfc term). NaN gives NaN.
#[inline(always)]
fn exp_small(x: f32) -> f32 {
    // 1.5·2²³ + 127: after the add, the low mantissa bits hold n + 127, which a shift moves into the exponent.
    const MAGIC: f32 = 12_583_039.0;
    let t = x.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-std::f32::consts::LN_2, x);
    let mut p = 1.0 / 720.0_f32;
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    y * f32::from_bits(t.to_bits() << 23)
}

/// GELU, erf form: x·Φ(x) = 0.5·x·(1 + erf(x/√2)), within 1e-6 of the exact value (3.4e-7 measured over every
/// f32 in ±[0.125, 6]). With c = erfc(|x|/√2) from Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7), whose
/// exp(-z²) factor keeps the tails accurate where 1 + erf would cancel, GELU is max(x, 0) - 0.5·|x|·c on both
/// sides, branch-free. |x| is capped at 10 in the correction, where c is below 1e-22, so ±inf come out exact.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    let ax = x.abs();
    let z = ax * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / 0.327_591_1f32.mul_add(z, 1.0);
    let mut p = 1.061_405_4_f32;
    p = p.mul_add(t, -1.453_152_1);
    p = p.mul_add(t, 1.421_413_8);
    p = p.mul_add(t, -0.284_496_74);
    p = p.mul_add(t, 0.254_829_6);
    // Compare-and-select rather than `max`/`min`: one instruction each, and NaN still reaches the result via t.
    let a = (-z) * z;
    let c = t * p * exp_small(if a < -87.0 { -87.0 } else { a });
    let cap = if ax > 10.0 { 10.0 } else { ax };
    (-0.5 * cap).mul_add(c, if x > 0.0 { x } else { 0.0 })
}

/// GELU, tanh form: 0.5·x·(1 + tanh(u)) with u = √(2/π)(x + 0.044715x³), computed as x·sigmoid(2u), which is
/// the same function without tanh's cancellation near 0.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // √(2/π)
    let u = K * (x + 0.044_715 * x * x * x);
    let g = x / (1.0 + exp(-2.0 * u));
    // Below -10 the exact value is under 1e-36; this also makes -inf give 0 rather than -inf/inf.
    if x < -10.0 {
        0.0
    } else {
        g
    }
}

/// SiLU: x·sigmoid(x).
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// Independent accumulators in the reductions below: four AVX-512 vectors, so the adds do not wait on each other.
const LANES: usize = 64;

/// Sum with 64 independent accumulators, so it vectorises without a serial dependency (and rounds less than a
/// running sum).
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    fold(acc, |a, b| a + b) + tail
}

/// Sum of squares of `x - mean`, vectorised like [`sum`].
#[inline(always)]
pub(crate) fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            let d = v - mean;
            *a = d.mul_add(d, *a);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    fold(acc, |a, b| a + b) + tail
}

/// Maximum ignoring NaN (-inf for an empty slice), vectorised.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    // `v > a` is false for NaN, so a NaN never replaces the running maximum; one instruction per vector.
    let pick = |a: f32, v: f32| if v > a { v } else { a };
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = pick(*a, *v);
        }
    }
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, v| pick(m, *v));
    pick(fold(acc, pick), tail)
}

/// Dot product with 16 independent accumulators.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..16 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Combines the accumulators pairwise.
#[inline(always)]
fn fold(mut acc: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] = f(acc[i], acc[i + n]);
        }
    }
    acc[0]
}
