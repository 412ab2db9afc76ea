//! Run-time CPU feature detection.

/// Instruction sets the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 and FMA (x86-64).
    pub avx2_fma: bool,
}

impl CpuFeatures {
    /// Features of the running CPU.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2_fma: std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self { avx2_fma: false }
        }
    }

    /// Short name of the GEMV path that will run.
    pub fn gemv_kernel(&self) -> &'static str {
        if self.avx2_fma {
            "bf16-gemv-avx2-fma"
        } else {
            "bf16-gemv-scalar"
        }
    }
}
