//! Run-time CPU feature detection.

/// Instruction sets the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 and FMA (x86-64).
    pub avx2_fma: bool,
    /// F16C half-precision conversions (x86-64).
    pub f16c: bool,
}

impl CpuFeatures {
    /// Features of the running CPU.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2_fma: std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma"),
                f16c: std::is_x86_feature_detected!("f16c"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self {
                avx2_fma: false,
                f16c: false,
            }
        }
    }
}
