//! Run-time CPU feature detection.

/// Instruction sets the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// AVX2 and FMA (x86-64).
    pub avx2_fma: bool,
    /// F16C half-precision conversions (x86-64).
    pub f16c: bool,
    /// AVX-512 F, BW and VL, with AVX2, FMA and F16C (x86-64): the 16-lane
    /// F32 micro-kernel.
    pub avx512: bool,
    /// [`avx512`](Self::avx512) plus AVX-512 VNNI (`vpdpbusd`): the integer
    /// block GEMVs.
    pub avx512_vnni: bool,
    /// AMX tiles with BF16 (x86-64 Linux, tile permission granted, kernel
    /// self-check passed): the GEMM on BF16 weights ([`crate::amx`]).
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// No vector extension: every kernel takes its scalar reference path.
    pub const SCALAR: Self = Self {
        avx2_fma: false,
        f16c: false,
        avx512: false,
        avx512_vnni: false,
        amx_bf16: false,
    };

    /// Features of the running CPU. To compare paths on one machine,
    /// `BLIP3_KERNELS=avx512` hides AMX, `=avx2` AMX and AVX-512, `=scalar`
    /// every one.
    pub fn detect() -> Self {
        static DETECTED: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| match std::env::var("BLIP3_KERNELS").as_deref() {
            Ok("scalar") => Self::SCALAR,
            Ok("avx2") => Self::of_this_cpu().without_avx512(),
            Ok("avx512") => Self::of_this_cpu(),
            _ => Self {
                amx_bf16: crate::amx::usable(),
                ..Self::of_this_cpu()
            },
        })
    }

    /// These features less the AVX-512 ones (and AMX).
    pub fn without_avx512(self) -> Self {
        Self {
            avx512: false,
            avx512_vnni: false,
            amx_bf16: false,
            ..self
        }
    }

    /// The names of the widest paths enabled, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self { amx_bf16: true, .. } => "amx-bf16",
            Self {
                avx512_vnni: true, ..
            } => "avx512-vnni",
            Self { avx512: true, .. } => "avx512",
            Self { avx2_fma: true, .. } => "avx2-fma",
            _ => "scalar",
        }
    }

    fn of_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            let avx2_fma = has!("avx2") && has!("fma");
            let f16c = has!("f16c");
            let avx512 =
                avx2_fma && f16c && has!("avx512f") && has!("avx512bw") && has!("avx512vl");
            Self {
                avx2_fma,
                f16c,
                avx512,
                avx512_vnni: avx512 && has!("avx512vnni"),
                // Asked separately (a system call and a self-check).
                amx_bf16: false,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::SCALAR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_reports_the_widest_path() {
        let features = CpuFeatures::detect();
        println!("kernel paths: {} ({features:?})", features.describe());
        // Lets an emulator run prove which paths the other tests exercised.
        if let Ok(expected) = std::env::var("BLIP3_EXPECT_KERNELS") {
            assert_eq!(features.describe(), expected);
        }
        assert!(!features.without_avx512().avx512);
        assert_eq!(CpuFeatures::SCALAR.describe(), "scalar");
    }
}
