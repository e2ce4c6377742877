//! Whether this process may run AMX bf16 instructions: the CPU has them (CPUID) and Linux granted the process
//! the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); without that grant the first tile instruction faults.

use std::sync::OnceLock;

/// `MLX_NATIVE_AMX=0` turns the AMX products off; they are on wherever the CPU has AMX and Linux grants it.
const ENV: &str = "MLX_NATIVE_AMX";

/// True when the CPU reports AMX-TILE and AMX-BF16.
pub(crate) fn present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(cpu_has_amx_bf16)
}

/// True once AMX is present and the kernel granted this process the tile state. Checked once.
pub(crate) fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| present() && request_tile_permission())
}

/// True when `MLX_NATIVE_AMX=0` turned the AMX products off. Read once.
pub(crate) fn turned_off() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var(ENV).is_ok_and(|v| v == "0"))
}

/// True when the products should use AMX: usable, and not turned off.
pub(crate) fn available() -> bool {
    !turned_off() && usable()
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 gives the highest leaf, so leaf 7 is asked only if present.
    // (`__cpuid_count` is a safe function in newer Rust releases, an unsafe one in older ones.)
    #[allow(unused_unsafe)]
    let max_leaf = unsafe { __cpuid_count(0, 0) }.eax;
    if max_leaf < 7 {
        return false;
    }
    // SAFETY: as above, leaf 7 is supported.
    #[allow(unused_unsafe)]
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    edx & AMX_BF16 != 0 && edx & AMX_TILE != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx_bf16() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes two integer arguments and touches no user memory; it fails
    // with an error code (handled) on kernels that do not know it.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    r == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}
