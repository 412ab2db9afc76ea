//! Decode-step micro-benchmark of the language model alone, for A/B checks
//! on a noisy machine: the ways of calling a step run alternately in one
//! process on the same loaded weights, several rounds each.
//!
//! ```sh
//! cargo run --release -p blip3-model --example decodebench -- MODEL_DIR [STEPS] [ROUNDS]
//! ```
//! `MODEL_DIR` is a checkpoint folder (a pre-quantised one from
//! `blip3 quantize` loads in seconds). After 8 untimed steps, each round
//! times `STEPS` (default 32) more single-token steps (decoder and head) on
//! the same growing cache. Modes: `caller` (steps run on the calling thread,
//! each parallel region wakes the pool) and `pool` (steps run on a pool
//! worker, `blip3_kernels::pool::on_pool`); `MODE=pool` runs one only (for
//! a profile). `PREFILL=N` times a prefill of N tokens instead (ROUNDS times).

use std::path::PathBuf;
use std::time::Instant;

use blip3_model::phi3::{KvCache, Phi3};
use blip3_model::weights::{WeightDtype, WeightStore};
use blip3_model::ModelConfig;
use candle_core::Device;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One decode step (decoder and head) of token `id`.
fn step(lm: &Phi3, cache: &mut KvCache, id: u32) -> Result<(), Error> {
    let hidden = lm.forward(&lm.embed(&[id])?, cache)?;
    lm.logits(&hidden)?;
    Ok(())
}

/// Tokens per second of `steps` decode steps, continuing `cache`.
fn round(lm: &Phi3, cache: &mut KvCache, steps: usize, on_pool: bool) -> Result<f64, Error> {
    let t = Instant::now();
    for i in 0..steps {
        let id = 100 + i as u32;
        if on_pool {
            blip3_kernels::pool::on_pool(|| step(lm, cache, id))?;
        } else {
            step(lm, cache, id)?;
        }
    }
    Ok(steps as f64 / t.elapsed().as_secs_f64())
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: decodebench MODEL_DIR [STEPS] [ROUNDS]")?,
    );
    let steps: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let t = Instant::now();
    let store = WeightStore::open(&dir, &Device::Cpu, WeightDtype::AsStored)?;
    let lm = Phi3::load(&store, "vlm.lang_model", &config.text_config)?;
    println!(
        "loaded {} decoder in {:.1} s; {steps} steps per round, threads {}",
        lm.weight_dtype(),
        t.elapsed().as_secs_f64(),
        blip3_kernels::pool::threads()
    );
    if let Some(tokens) = std::env::var("PREFILL").ok().and_then(|v| v.parse().ok()) {
        return prefill(&lm, tokens, rounds);
    }
    let mode = std::env::var("MODE").unwrap_or_default();
    // One cache throughout (the modes alternate, so both see similar depths).
    let mut cache = lm.new_cache();
    for id in 1..=8 {
        step(&lm, &mut cache, id)?;
    }
    let mut results: Vec<(&str, Vec<f64>)> = vec![("caller", vec![]), ("pool", vec![])];
    results.retain(|(name, _)| mode.is_empty() || mode == *name);
    for r in 0..rounds {
        for (name, rates) in results.iter_mut() {
            let rate = round(&lm, &mut cache, steps, *name == "pool")?;
            println!("round {r} {name:7} {rate:6.2} tokens/s");
            rates.push(rate);
        }
    }
    for (name, mut rates) in results {
        rates.sort_by(f64::total_cmp);
        println!("median {name:7} {:6.2} tokens/s", rates[rates.len() / 2]);
    }
    Ok(())
}

/// Times a prefill of `tokens` tokens into an empty cache, `rounds` times
/// (`PREFILL=N`: short prompts such as a follow-up chat turn).
fn prefill(lm: &Phi3, tokens: usize, rounds: usize) -> Result<(), Error> {
    let ids: Vec<u32> = (0..tokens as u32).map(|i| 100 + i).collect();
    let mut times = Vec::new();
    for r in 0..rounds {
        let mut cache = lm.new_cache();
        let t = Instant::now();
        blip3_kernels::pool::on_pool(|| lm.forward(&lm.embed(&ids)?, &mut cache))?;
        let s = t.elapsed().as_secs_f64();
        println!("round {r} prefill of {tokens} tokens {s:6.3} s");
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "median prefill {median:.3} s ({:.1} tokens/s)",
        tokens as f64 / median
    );
    Ok(())
}
