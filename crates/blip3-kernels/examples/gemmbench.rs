//! Micro-benchmark of the many-row GEMM (`blip3_kernels::gemm`) on the
//! products that dominate image encoding and prefill, side by side with
//! candle's F32 matmul (what the engine used before), in GFLOP/s and as a
//! fraction of the measured peak (`blip3_kernels::peak`: F32 FMA for the F32
//! product, `vdpbf16ps` for BF16 where the CPU has it, `vpdpbusd` for Q8_0
//! where it has AVX-512 VNNI).
//!
//! ```sh
//! cargo run --release -p blip3-kernels --example gemmbench
//! cargo run --release -p blip3-kernels --example gemmbench -- q8_0 bf16   # only these
//! ```
//!
//! Arguments name the formats to time (`f32`, `bf16`, `q8_0`, `candle`);
//! without any, all four are timed.

use std::time::Instant;

use blip3_kernels::gemm::{gemm, DenseRows};
use blip3_kernels::q8::Q8Matrix;
use candle_core::{Device, Tensor};
use half::bf16;

/// (name, M, N, K): activation rows, weight rows (outputs), depth.
const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("prefill qkv 685x9216x3072", 685, 9216, 3072),
    ("prefill down 685x3072x8192", 685, 3072, 8192),
    ("ViT fc1 3650x5120x1280", 3650, 5120, 1280),
    ("ViT out 3650x1280x1280", 3650, 1280, 1280),
    ("ViT 1 crop fc2 730x1280x5120", 730, 1280, 5120),
    ("perceiver kv 640x2048x1152", 640, 2048, 1152),
];

fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Best of `reps` runs, in GFLOP/s for an M×N×K product.
fn gflops(m: usize, n: usize, k: usize, reps: usize, mut run: impl FnMut()) -> f64 {
    run();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

/// Times `run` when `on`, else reports nothing.
fn maybe(on: bool, m: usize, n: usize, k: usize, run: impl FnMut()) -> Option<f64> {
    on.then(|| gflops(m, n, k, 2, run))
}

/// `value (percent%)`, or dashes for a format that was not timed.
fn shown(value: Option<f64>, peak: Option<f64>) -> String {
    match (value, peak) {
        (Some(v), Some(p)) => format!("{v:6.1} ({:3.0}%)", 100.0 * v / p),
        (Some(v), None) => format!("{v:6.1} (  -%)"),
        (None, _) => format!("{:>6} (  -%)", "-"),
    }
}

fn main() -> candle_core::Result<()> {
    let asked: Vec<String> = std::env::args().skip(1).collect();
    let wants = |format: &str| asked.is_empty() || asked.iter().any(|a| a == format);
    // As the engine does: large freed buffers stay in the heap, so packed
    // operands are not page-faulted and zeroed afresh on every call.
    blip3_kernels::allocator::retain_freed_memory();
    let peak = blip3_kernels::peak::measure(300);
    let bf16_peak = peak.bf16_gemm_gflops();
    println!(
        "threads: {}; kernels: {}; measured peak: f32 FMA {:.0} GFLOP/s, vdpbf16ps {}, AMX tdpbf16ps {}, vpdpbusd {} (bf16 % below is of {bf16_peak:.0}, q8_0 % of vpdpbusd)",
        rayon::current_num_threads(),
        blip3_kernels::gemm::path(blip3_kernels::cpu::CpuFeatures::detect()),
        peak.f32_gflops,
        peak.bf16_gflops
            .map_or("(none)".to_string(), |g| format!("{g:.0} GFLOP/s")),
        peak.amx_gflops
            .map_or("(none)".to_string(), |g| format!("{g:.0} GFLOP/s")),
        peak.int8_gops
            .map_or("(none)".to_string(), |g| format!("{g:.0} GOP/s"))
    );
    for (name, m, n, k) in SHAPES {
        let a = data(m * k, 1);
        let w = data(n * k, 2);
        // 64-byte aligned rows, as the engine's loader builds BF16 weights
        // (the AMX path copies misaligned rows first).
        let mut wb_storage = vec![bf16::ZERO; n * k + 32];
        let start = wb_storage.as_ptr().align_offset(64).min(32);
        let wb = &mut wb_storage[start..start + n * k];
        for (d, &v) in wb.iter_mut().zip(&w) {
            *d = bf16::from_f32(v);
        }
        let wb = &*wb;
        let q8 = Q8Matrix::quantize(&w, n, k).expect("k is a multiple of 32");
        let mut c = vec![0f32; m * n];
        let ours_f32 = maybe(wants("f32"), m, n, k, || {
            gemm(&a, m, &DenseRows::new(&w, n, k).unwrap(), &mut c)
        });
        let ours_bf16 = maybe(wants("bf16"), m, n, k, || {
            gemm(&a, m, &DenseRows::new(wb, n, k).unwrap(), &mut c)
        });
        let ours_q8 = maybe(wants("q8_0"), m, n, k, || gemm(&a, m, &q8, &mut c));
        let at = Tensor::from_vec(a.clone(), (m, k), &Device::Cpu)?;
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
        let mut err = None;
        let candle = maybe(wants("candle"), m, n, k, || {
            if let Err(e) = at.matmul(&wt.t().expect("2-D")) {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let speedup = match (ours_f32, candle) {
            (Some(o), Some(c)) => format!("({:.2}x)", o / c),
            _ => String::new(),
        };
        println!(
            "{name:28} ours f32 {}  bf16 {}  q8_0 {}  | candle f32 {} GFLOP/s  {speedup}",
            shown(ours_f32, Some(peak.f32_gflops)),
            shown(ours_bf16, Some(bf16_peak)),
            shown(ours_q8, peak.int8_gops),
            candle.map_or(format!("{:>6}", "-"), |c| format!("{c:6.1}")),
        );
    }
    Ok(())
}
