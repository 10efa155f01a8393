//! One function body compiled twice, for baseline x86-64 and for AVX2, and the run-time
//! choice between them: the CPU layers' BatchNorm passes and the image resize use it.

/// Defines a function whose body also exists compiled for AVX2, taken where the processor
/// has it. The binary targets baseline x86-64, whose SSE2 vectors are half as wide; built for
/// AVX2, the BatchNorm passes took about half the time (`dcgan bench --profile`). The body
/// must call nothing that is not inlined (no iterator sums), or that part runs at the
/// baseline. Only the instructions differ: Rust never fuses or reorders float operations on
/// its own, so both give the same bits.
macro_rules! with_avx2 {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2_body($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::simd::avx2() {
                    // SAFETY: the processor has AVX2, checked just now.
                    return unsafe { avx2_body($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Whether the processor has AVX2 (and a test has not asked for the baseline path).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2() -> bool {
    #[cfg(test)]
    if BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::is_x86_feature_detected!("avx2")
}

pub(crate) use with_avx2;

/// Set while a test runs the baseline paths of `with_avx2!` functions on a processor
/// that has AVX2.
#[cfg(test)]
static BASELINE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `f` run twice, on the path the processor takes and on the baseline path, for tests that
/// both give the same result. One such test at a time: the switch is global.
#[cfg(test)]
pub(crate) fn both_paths<T>(f: impl Fn() -> T) -> (T, T) {
    use std::sync::atomic::Ordering::Relaxed;
    /// Turns the switch back off even if `f` panics.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BASELINE_ONLY.store(false, Relaxed);
        }
    }
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(target_arch = "x86_64")]
    if !std::is_x86_feature_detected!("avx2") {
        eprintln!("NOTE: this processor has no AVX2; both runs take the baseline path");
    }
    let fast = f();
    let _reset = Reset;
    BASELINE_ONLY.store(true, Relaxed);
    (fast, f())
}
