//! The machine's compute roofline, measured: tight loops of independent
//! fused multiply-adds (F32 FMA, and `vdpbf16ps` and `vpdpbusd` where present) on every pool
//! thread, so benchmarks can report their GEMMs as a fraction of what the
//! cores can do rather than of a datasheet figure.

use std::time::Instant;

use rayon::prelude::*;

use crate::cpu::CpuFeatures;

/// Peak arithmetic rates of this machine's pool threads, in GFLOP/s (a
/// multiply-add counts as 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// F32 FMAs at the widest vector width in use (AVX-512 or AVX2).
    pub f32_gflops: f64,
    /// BF16 pair dot products (`vdpbf16ps`, 2 multiply-adds per F32 lane);
    /// `None` without AVX-512 BF16.
    pub bf16_gflops: Option<f64>,
    /// AMX `tdpbf16ps` on register tiles; `None` without a usable AMX unit.
    pub amx_gflops: Option<f64>,
    /// Byte dot products (`vpdpbusd`, 4 multiply-adds per 32-bit lane), in
    /// GOP/s; `None` without AVX-512 VNNI.
    pub int8_gops: Option<f64>,
}

impl Peak {
    /// The roofline of the BF16-weight GEMM this machine runs: AMX where
    /// usable, else `vdpbf16ps`, else F32 FMA.
    pub fn bf16_gemm_gflops(&self) -> f64 {
        self.amx_gflops
            .or(self.bf16_gflops)
            .unwrap_or(self.f32_gflops)
    }
}

/// Measures both rates over about `millis` milliseconds each (all threads).
pub fn measure(millis: u64) -> Peak {
    let features = CpuFeatures::detect();
    Peak {
        f32_gflops: rate(millis, |iters| fma_loop(features, iters)),
        bf16_gflops: bf16_available(features).then(|| rate(millis, bf16_loop)),
        amx_gflops: amx_available(features).then(|| rate(millis, amx_loop)),
        int8_gops: int8_available(features).then(|| rate(millis, int8_loop)),
    }
}

fn int8_available(features: CpuFeatures) -> bool {
    cfg!(target_arch = "x86_64") && features.avx512_vnni
}

fn int8_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when AVX-512 VNNI was detected (`int8_available`).
        unsafe { x86::dpbusd_avx512(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        0.0
    }
}

fn bf16_available(features: CpuFeatures) -> bool {
    cfg!(target_arch = "x86_64") && features.avx512_bf16
}

fn amx_available(features: CpuFeatures) -> bool {
    cfg!(target_arch = "x86_64") && features.amx_bf16
}

fn amx_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when the AMX path is usable (`amx_available`).
        unsafe { crate::amx::peak_loop(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        0.0
    }
}

/// Runs `kernel(iters)` (returning the flops it did) on every pool thread,
/// doubling `iters` until one run lasts `millis`; the total rate.
fn rate(millis: u64, kernel: impl Fn(u64) -> f64 + Sync) -> f64 {
    let threads = rayon::current_num_threads();
    let mut iters = 1u64 << 12;
    loop {
        let start = Instant::now();
        let flops: f64 = (0..threads).into_par_iter().map(|_| kernel(iters)).sum();
        let s = start.elapsed().as_secs_f64();
        if s * 1000.0 >= millis as f64 || iters >= 1 << 40 {
            return flops / s / 1e9;
        }
        iters *= 2;
    }
}

/// `iters` steps of 12 independent FMA chains; returns the flops done.
fn fma_loop(features: CpuFeatures, iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if features.avx512 {
            // SAFETY: AVX-512 F was detected on this CPU.
            return unsafe { x86::fma_avx512(iters) };
        }
        if features.avx2_fma {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            return unsafe { x86::fma_avx2(iters) };
        }
    }
    let _ = features;
    // Scalar: 12 chains of mul_add, the compiler's best.
    let mut acc = [1.0f32; 12];
    for _ in 0..iters {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    2.0 * 12.0 * iters as f64
}

fn bf16_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: only called when AVX-512 BF16 was detected (`bf16_available`).
        unsafe { x86::dpbf16_avx512(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        0.0
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Chains per loop: enough to cover the FMA latency on two pipes.
    const CHAINS: usize = 24;

    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(iters: u64) -> f64 {
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
        (2 * 16 * CHAINS) as f64 * iters as f64
    }

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(iters: u64) -> f64 {
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
        (2 * 8 * CHAINS) as f64 * iters as f64
    }

    /// # Safety
    /// AVX-512 F and AVX-512 BF16 must be available.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dpbf16_avx512(iters: u64) -> f64 {
        // Two BF16 ones per 32-bit word, reinterpreted as BF16 pairs.
        let pair = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f80_3f80));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_dpbf16_ps(*v, pair, pair);
            }
        }
        std::hint::black_box(acc);
        // 16 lanes × 2 products × (multiply + add).
        (4 * 16 * CHAINS) as f64 * iters as f64
    }

    /// # Safety
    /// AVX-512 F and AVX-512 VNNI must be available.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn dpbusd_avx512(iters: u64) -> f64 {
        let bytes = _mm512_set1_epi8(1);
        let mut acc = [_mm512_setzero_si512(); CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_dpbusd_epi32(*v, bytes, bytes);
            }
        }
        std::hint::black_box(acc);
        // 16 lanes × 4 products × (multiply + add).
        (8 * 16 * CHAINS) as f64 * iters as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_positive_and_bf16_only_where_supported() {
        let p = measure(5);
        assert!(p.f32_gflops > 0.0);
        assert_eq!(
            p.bf16_gflops.is_some(),
            bf16_available(CpuFeatures::detect())
        );
        assert_eq!(p.amx_gflops.is_some(), amx_available(CpuFeatures::detect()));
        assert_eq!(p.int8_gops.is_some(), int8_available(CpuFeatures::detect()));
    }
}
