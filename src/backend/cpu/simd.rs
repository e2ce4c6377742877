//! Runtime CPU-feature dispatch. Kernels are plain loops over slices; this compiles each one a second time with
//! AVX2 and FMA enabled and picks that copy when the CPU has them, so the loops vectorise 8 lanes wide on any
//! x86-64 build without `-C target-cpu`.

/// Whether the AVX2 + FMA copies may run on this CPU.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether the AVX-512 copies may run on this CPU.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx512() -> bool {
    has_avx2_fma() && std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl")
}

/// Defines `fn $name(args) -> R` that runs `$body` compiled for AVX2 + FMA when the CPU supports it, and for the
/// baseline target otherwise. Everything the body calls must be `#[inline(always)]` to share the features.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if $crate::backend::cpu::simd::has_avx512() {
                    // SAFETY: `avx512` only needs AVX-512F/VL, AVX2 and FMA, which the CPU was just checked to have.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if $crate::backend::cpu::simd::has_avx2_fma() {
                    // SAFETY: `avx2` only needs the AVX2 and FMA instructions, which the CPU was just checked to have.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use multiversion;
