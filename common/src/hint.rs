//! Cache hints for the redirect path.
//!
//! This module holds the workspace's only `unsafe` code (the workspace denies it everywhere
//! else): the x86-64 prefetch instruction, whose stable intrinsic is an `unsafe fn`
//! (`std::hint::prefetch_read` is not stable yet). A prefetch names an address but never
//! reads or writes it and cannot fault, so no address, dangling or not, makes it unsound.

/// Bytes in a cache line.
const LINE: usize = 64;

/// Asks the CPU to start bringing every cache line of `*value` into its caches, for a read
/// or write that comes later: that access then does not wait for the lines. A hint only: it
/// changes no value, and the CPU may ignore it. Nothing is read through `value`, so it may
/// point at uninitialised memory. A no-op on targets other than x86-64.
#[inline]
pub fn prefetch_lines<T>(value: *const T) {
    let first = value.cast::<u8>();
    let skew = first.addr() % LINE;
    let lines = (skew + size_of::<T>().max(1)).div_ceil(LINE);
    for line in 0..lines {
        prefetch_line(first.wrapping_add(line * LINE));
    }
}

#[inline]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the address to the cache hierarchy: it does not
    // dereference it, raises no fault for any address, and has no effect on the program's
    // values (Intel SDM, PREFETCHh). SSE is part of the x86-64 baseline.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_may_be_prefetched() {
        // Values of one line, of several, unaligned, and addresses never allocated: a hint
        // never reads or faults.
        let bytes = [7u8; 300];
        prefetch_lines(std::ptr::from_ref(&bytes));
        prefetch_lines(bytes[3..].as_ptr());
        prefetch_lines(std::ptr::null::<[u8; 200]>());
        prefetch_lines(std::ptr::dangling::<u64>());
        prefetch_lines(std::ptr::without_provenance::<[u64; 4]>(usize::MAX - 8));
        assert_eq!(bytes, [7u8; 300]);
    }
}
