//! Run-time CPU feature detection.

/// Instruction sets the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// AVX2 and FMA (x86-64).
    pub avx2_fma: bool,
    /// F16C half-precision conversions (x86-64).
    pub f16c: bool,
    /// AVX-VNNI (256-bit `vpdpbusd`, VEX-encoded) with AVX2, FMA and F16C:
    /// the integer block GEMVs on CPUs without AVX-512 (Alder Lake and later).
    pub avx_vnni: bool,
    /// AVX-512 F, BW and VL, with AVX2, FMA and F16C (x86-64): the 16-lane
    /// F32 micro-kernel.
    pub avx512: bool,
    /// [`avx512`](Self::avx512) plus AVX-512 VNNI (`vpdpbusd`): the integer
    /// block GEMVs.
    pub avx512_vnni: bool,
    /// AVX-512 F and BF16 (`vdpbf16ps`), kernel self-check passed: the GEMM
    /// on BF16 weights where there is no AMX ([`crate::avx512_bf16`]).
    pub avx512_bf16: bool,
    /// AMX tiles with BF16 (x86-64 Linux, tile permission granted, kernel
    /// self-check passed): the GEMM on BF16 weights ([`crate::amx`]).
    pub amx_bf16: bool,
    /// NEON (aarch64, where every CPU has it): the F32 micro-kernel, the
    /// BF16 GEMV and the Q8_0 and Q4_0 GEMVs.
    pub neon: bool,
}

impl CpuFeatures {
    /// No vector extension: every kernel takes its scalar reference path.
    pub const SCALAR: Self = Self {
        avx2_fma: false,
        f16c: false,
        avx_vnni: false,
        avx512: false,
        avx512_vnni: false,
        avx512_bf16: false,
        amx_bf16: false,
        neon: false,
    };

    /// Features of the running CPU. To compare paths on one machine,
    /// `BLIP3_KERNELS=avx512-bf16` hides AMX, `=avx512` AMX and AVX-512 BF16,
    /// `=avx2` every AVX-512 path and AVX-VNNI, `=scalar` every one (NEON
    /// too).
    pub fn detect() -> Self {
        static DETECTED: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| match std::env::var("BLIP3_KERNELS").as_deref() {
            Ok("scalar") => Self::SCALAR,
            Ok("avx2") => Self {
                avx_vnni: false,
                ..Self::of_this_cpu().without_avx512()
            },
            Ok("avx512") => Self::of_this_cpu(),
            Ok("avx512-bf16") => Self {
                avx512_bf16: crate::avx512_bf16::usable(),
                ..Self::of_this_cpu()
            },
            _ => Self {
                avx512_bf16: crate::avx512_bf16::usable(),
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
            avx512_bf16: false,
            amx_bf16: false,
            ..self
        }
    }

    /// The name of the widest path enabled, for reports.
    pub fn describe(self) -> &'static str {
        self.paths().first().copied().unwrap_or("scalar")
    }

    /// The names of every vector path enabled, widest first.
    pub fn paths(self) -> Vec<&'static str> {
        [
            (self.amx_bf16, "amx-bf16"),
            (self.avx512_bf16, "avx512-bf16"),
            (self.avx512_vnni, "avx512-vnni"),
            (self.avx512, "avx512"),
            (self.avx_vnni, "avx-vnni"),
            (self.avx2_fma, "avx2-fma"),
            (self.neon, "neon"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
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
                avx_vnni: avx2_fma && f16c && has!("avxvnni"),
                avx512,
                avx512_vnni: avx512 && has!("avx512vnni"),
                // Asked separately (self-checks, and a system call for AMX).
                avx512_bf16: false,
                amx_bf16: false,
                neon: false,
            }
        }
        // NEON is part of the aarch64 base architecture: nothing to ask.
        #[cfg(target_arch = "aarch64")]
        {
            Self {
                neon: true,
                ..Self::SCALAR
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
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
        // Lets an emulator run prove which paths the other tests exercised:
        // a comma-separated list of paths that must all be enabled.
        if let Ok(expected) = std::env::var("BLIP3_EXPECT_KERNELS") {
            for name in expected.split(',') {
                assert!(
                    features.paths().contains(&name),
                    "{name} not in {features:?}"
                );
            }
        }
        assert!(!features.without_avx512().avx512);
        assert_eq!(CpuFeatures::SCALAR.describe(), "scalar");
    }
}
