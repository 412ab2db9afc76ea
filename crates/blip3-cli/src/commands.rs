//! The subcommands.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use blip3_engine::parity::{write_dump, DumpInfo};
use blip3_engine::{GenerationParams, Pipeline, PipelineOptions, RunOutput, SamplingParams};
use blip3_model::checkpoint::{write_random_checkpoint, StoreDtype, HF_SHARD_BYTES};
use blip3_model::weights::WeightDtype;
use blip3_model::{Family, ModelConfig, SpliceMode, Variant};
use blip3_preprocess::{AspectMode, RgbImage};

use crate::{
    AspectArg, BandwidthArgs, BenchArgs, CompareArgs, DtypeArg, DumpArgs, FamilyArg, GenerateArgs,
    InitRandomArgs, LoadArgs, ModelArgs, QuantArg, QuantizeArgs, SamplingArgs, StoreArg, SwitchArg,
};

impl SamplingArgs {
    /// The engine's parameters for these flags.
    pub(crate) fn params(&self, max_new_tokens: usize) -> GenerationParams {
        GenerationParams {
            max_new_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
            },
            top_logprobs: 0,
            completion: false,
            ignore_eos: false,
        }
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Download progress drawn with indicatif on stderr.
struct Bars(Option<indicatif::ProgressBar>);

impl blip3_hub::Progress for Bars {
    fn start(&mut self, file: &str, size: u64, done: u64) {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:40} {bytes:>10}/{total_bytes:10} {bar:30} {bytes_per_sec:>12} {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(file.to_string());
        bar.set_position(done);
        self.0 = Some(bar);
    }
    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish();
        }
    }
}

/// `--model` as a local folder: a folder as is, or a Hugging Face id fetched
/// into (or found in) the standard HF cache.
pub(crate) fn model_dir(model: &Path) -> Result<std::path::PathBuf> {
    let spec = model.to_string_lossy();
    let config = blip3_hub::HubConfig::from_env();
    blip3_hub::resolve(&spec, &config, &mut Bars(None))
        .with_context(|| format!("resolving --model {spec}"))
}

/// Loads a model folder as the flags ask.
pub(crate) fn load(args: &LoadArgs) -> Result<Pipeline> {
    let dir = model_dir(&args.model)?;
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // candle sizes its thread pools from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let options = PipelineOptions {
        weight_dtype: match args.dtype {
            DtypeArg::Auto => WeightDtype::AsStored,
            DtypeArg::F32 => WeightDtype::F32,
            DtypeArg::Bf16 => WeightDtype::Bf16,
        },
        quantization: args.quantize.map(QuantArg::format),
        aspect: args.aspect.map(|a| match a {
            AspectArg::Anyres => AspectMode::Anyres,
            AspectArg::Pad => AspectMode::Pad,
        }),
        max_pixels: args.max_pixels,
        kv_cache: match args.kv_cache {
            crate::KvArg::Auto => None,
            crate::KvArg::F32 => Some(blip3_model::phi3::KvPrecision::F32),
            crate::KvArg::F16 => Some(blip3_model::phi3::KvPrecision::F16),
        },
        splice: if args.first_image_only {
            SpliceMode::FirstOnly
        } else {
            SpliceMode::EveryImage
        },
        padding_mask: match args.padding_mask {
            SwitchArg::Auto => None,
            SwitchArg::On => Some(true),
            SwitchArg::Off => Some(false),
        },
        ..Default::default()
    };
    Pipeline::load(&dir, &options)
        .with_context(|| format!("loading model folder {}", dir.display()))
}

/// Decodes image files in order, naming the one that fails.
pub(crate) fn load_images(
    pipeline: &Pipeline,
    paths: &[std::path::PathBuf],
) -> Result<Vec<RgbImage>> {
    paths
        .iter()
        .map(|p| {
            pipeline
                .load_image(p)
                .with_context(|| format!("reading image {}", p.display()))
        })
        .collect()
}

/// The prompt the flags ask for: `--prompt` as is with `--raw-prompt`, else
/// the family's chat frame with one image marker per image.
pub(crate) fn build_prompt(pipeline: &Pipeline, args: &ModelArgs) -> String {
    if args.raw_prompt {
        args.prompt.clone()
    } else {
        pipeline.chat_prompt(&args.prompt, args.system.as_deref(), args.images.len())
    }
}

fn run(
    pipeline: &Pipeline,
    args: &ModelArgs,
    params: &GenerationParams,
    capture: bool,
) -> Result<(RunOutput, String)> {
    let images = load_images(pipeline, &args.images)?;
    let prompt = build_prompt(pipeline, args);
    let mut params = params.clone();
    params.completion = args.raw_prompt;
    let output = pipeline.generate(&images, &prompt, &params, capture, &mut |_| {})?;
    Ok((output, prompt))
}

/// The `generate --json` object: text, ids, stop reason, timings, image, memory.
pub(crate) fn output_json(output: &RunOutput, load_s: f64) -> serde_json::Value {
    let t = &output.timings;
    serde_json::json!({
        "text": output.text,
        "ids": output.generated_ids,
        "stop_reason": output.stop_reason.label(),
        "input_tokens": output.input_ids.len(),
        "timings": {
            "load_s": load_s,
            "preprocess_s": t.preprocess_s,
            "vision_encode_s": t.vision_encode_s,
            "resampler_s": t.resampler_s,
            "prefill_s": t.prefill_s,
            "ttft_s": t.ttft_s,
            "decode_s": t.decode_s,
            "prefill_tokens": t.prefill_tokens,
            "generated_tokens": t.generated_tokens,
            "prefill_tokens_per_s": t.prefill_tokens as f64 / t.prefill_s.max(1e-9),
            "decode_tokens_per_s": (t.generated_tokens.saturating_sub(1)) as f64 / t.decode_s.max(1e-9),
        },
        "images": output.images,
        "image_token_counts": output.image_token_counts,
        "peak_rss_bytes": peak_rss_bytes(),
    })
}

pub fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let load_start = std::time::Instant::now();
    let pipeline = load(&args.model.load)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let params = args.sampling.params(args.max_new_tokens);
    let (output, _) = run(&pipeline, &args.model, &params, false)?;
    if args.json {
        println!("{}", output_json(&output, load_s));
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", output.text)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn dump(args: DumpArgs) -> Result<ExitCode> {
    // The parity harness keeps an exact (F32) KV cache unless asked otherwise,
    // whatever the weights' precision.
    let mut load_args = args.model.load.clone();
    if matches!(load_args.kv_cache, crate::KvArg::Auto) {
        load_args.kv_cache = crate::KvArg::F32;
    }
    let pipeline = load(&load_args)?;
    let params = GenerationParams::greedy(args.max_new_tokens);
    let (output, prompt) = run(&pipeline, &args.model, &params, true)?;
    let info = DumpInfo {
        question: args.model.prompt.clone(),
        prompt,
        image_files: args
            .model
            .images
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
    };
    write_dump(&args.out, &output, &info)?;
    eprintln!(
        "wrote {} ({} prompt ids, {} generated, stop: {})",
        args.out.display(),
        output.input_ids.len(),
        output.generated_ids.len(),
        output.stop_reason.label()
    );
    Ok(ExitCode::SUCCESS)
}

fn copy_non_weight_files(from: &Path, to: &Path) -> Result<()> {
    for name in [
        "config.json",
        "preprocessor_config.json",
        "generation_config.json",
        "tokenizer.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
    ] {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, to.join(name))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

pub fn init_random(args: InitRandomArgs) -> Result<ExitCode> {
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "output folder {} exists and is not empty",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let dtype = match args.dtype {
        StoreArg::F32 => StoreDtype::F32,
        StoreArg::Bf16 => StoreDtype::Bf16,
    };
    let config = match &args.like {
        Some(dir) => {
            let config = ModelConfig::from_file(&dir.join("config.json"))?;
            copy_non_weight_files(dir, &args.out)?;
            config
        }
        None => {
            let family = match args.family {
                FamilyArg::Blip3R1 => Family::Blip3R1,
                FamilyArg::XgenmmV15 => Family::XgenmmV15,
            };
            crate::presets::write_full_preset(&args.out, family, dtype)?;
            ModelConfig::from_file(&args.out.join("config.json"))?
        }
    };
    let family = config.family().map_err(anyhow::Error::msg)?;
    if args.base {
        // Base checkpoints stop on <|endoftext|> (family spec §1.7), and v1.5
        // base ships no anyres grid (`"grids": null`).
        std::fs::write(
            args.out.join("generation_config.json"),
            crate::presets::BASE_GENERATION_CONFIG,
        )?;
        if family == Family::XgenmmV15 {
            let path = args.out.join("preprocessor_config.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            if let Some(map) = value.as_object_mut() {
                map.insert("grids".into(), serde_json::Value::Null);
            }
            std::fs::write(&path, serde_json::to_string_pretty(&value)?)?;
        }
    }
    let variant = Variant {
        text_projection: family == Family::Blip3R1 && !args.base,
    };
    let specs = family.tensor_specs(&config, variant);
    let params: usize = specs.iter().map(|s| s.numel()).sum();
    eprintln!(
        "writing a {family}{} checkpoint: {} tensors, {:.3} B parameters ({:.2} GB) to {}",
        if args.base { " base" } else { "" },
        specs.len(),
        params as f64 / 1e9,
        (params * if dtype == StoreDtype::F32 { 4 } else { 2 }) as f64 / 1e9,
        args.out.display()
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} shard {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    write_random_checkpoint(
        &args.out,
        &specs,
        args.seed,
        dtype,
        HF_SHARD_BYTES,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish();
    Ok(ExitCode::SUCCESS)
}

pub fn compare(args: CompareArgs) -> Result<ExitCode> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let reports =
        blip3_engine::parity::compare(&read(&args.candidate)?, &read(&args.golden)?, args.rel_tol)
            .map_err(anyhow::Error::msg)?;
    println!(
        "{:<22} {:>6} {:>12} {:>12} {:>12}  result",
        "tensor", "shape", "max_abs", "max_rel", "limit"
    );
    let mut ok = true;
    for r in &reports {
        ok &= r.pass;
        println!(
            "{:<22} {:>6} {:>12.3e} {:>12.3e} {:>12.3e}  {}{}",
            r.name,
            if r.shape_ok { "ok" } else { "DIFF" },
            r.max_abs,
            r.max_rel,
            r.limit,
            if r.pass { "pass" } else { "FAIL" },
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.note)
            }
        );
    }
    println!(
        "{}",
        if ok {
            "all tensors pass"
        } else {
            "some tensors FAIL"
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let load_start = std::time::Instant::now();
    let pipeline = load(&args.model.load)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let mut runs = Vec::with_capacity(args.repeat);
    let params = GenerationParams::greedy(args.max_new_tokens);
    for i in 0..args.warmup + args.repeat {
        let (out, _) = run(&pipeline, &args.model, &params, false)?;
        if i >= args.warmup {
            runs.push(out);
        }
    }
    let pick = |f: &dyn Fn(&RunOutput) -> f64| median(runs.iter().map(f).collect());
    let prefill_tokens = runs[0].timings.prefill_tokens;
    let decode_tokens = runs[0].timings.generated_tokens.saturating_sub(1);
    let lm = pipeline.model().lm();
    let simd_name = blip3_kernels::gemm::path(blip3_kernels::cpu::CpuFeatures::detect());
    let value = serde_json::json!({
        "load_s": load_s,
        "preprocess_s": pick(&|r| r.timings.preprocess_s),
        "vision_encode_s": pick(&|r| r.timings.vision_encode_s),
        "resampler_s": pick(&|r| r.timings.resampler_s),
        "prefill_s": pick(&|r| r.timings.prefill_s),
        "prefill_tokens": prefill_tokens,
        "prefill_tokens_per_s": pick(&|r| r.timings.prefill_tokens as f64 / r.timings.prefill_s.max(1e-9)),
        "ttft_s": pick(&|r| r.timings.ttft_s),
        "decode_tokens": decode_tokens,
        "decode_tokens_per_s": pick(&|r| r.timings.generated_tokens.saturating_sub(1) as f64 / r.timings.decode_s.max(1e-9)),
        "peak_rss_bytes": peak_rss_bytes(),
        "threads": candle_core_threads(),
        "weights_format": lm.weight_dtype(),
        "kv_cache": lm.kv_precision().name(),
        "kernels": {
            "matmul": format!("blip3-kernels packing gemm ({simd_name}; weights read in their own format)"),
            "attention": "blip3-kernels blocked multi-query attention (prefill, ViT, perceiver); in-place cache attention (decode)",
            "kv_cache": lm.kv_precision().name(),
            "decode_gemv": decode_kernel_name(&lm.weight_dtype()),
        },
        "repeat": args.repeat,
        "warmup": args.warmup,
        "family": pipeline.family().name(),
        "images": runs[0].images,
    });
    if args.json {
        println!("{value}");
    } else {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn candle_core_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The kernel decode steps run for a weight format.
fn decode_kernel_name(format: &str) -> String {
    let features = blip3_kernels::cpu::CpuFeatures::detect();
    match blip3_kernels::quantized::gemv_path(format, features) {
        Some(simd) => format!("{format}-gemv-{simd}"),
        None => format!("candle-matmul ({format})"),
    }
}

pub fn bandwidth(args: BandwidthArgs) -> Result<ExitCode> {
    if !(args.gib > 0.0 && args.gib <= 64.0) {
        bail!("--gib must be in (0, 64]");
    }
    let bytes = (args.gib * (1u64 << 30) as f64) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = blip3_kernels::bandwidth::read_bandwidth(bytes, 1, args.passes);
    let all = blip3_kernels::bandwidth::read_bandwidth(bytes, cores, args.passes);
    let value = serde_json::json!({
        "buffer_bytes": bytes,
        "read_bytes_per_s_1_thread": one,
        "read_bytes_per_s_all_threads": all,
        "threads": cores,
    });
    println!("{value}");
    Ok(ExitCode::SUCCESS)
}

impl QuantArg {
    /// The model crate's format.
    pub(crate) fn format(self) -> blip3_model::weights::Quantization {
        match self {
            QuantArg::Q8_0 => blip3_model::weights::Quantization::Q8_0,
            QuantArg::Q4_0 => blip3_model::weights::Quantization::Q4_0,
            QuantArg::Q4K => blip3_model::weights::Quantization::Q4K,
        }
    }
}

/// `blip3 quantize`: writes a pre-quantised copy of a model folder.
pub fn quantize(args: QuantizeArgs) -> Result<ExitCode> {
    let src = model_dir(&args.model)?;
    let start = std::time::Instant::now();
    let written =
        blip3_model::quantized_folder::write_quantized_folder(&src, &args.out, args.to.format())
            .with_context(|| format!("quantising {} into {}", src.display(), args.out.display()))?;
    let value = serde_json::json!({
        "out": args.out,
        "format": args.to.format().name(),
        "quantized_tensors": written.quantized_tensors,
        "copied_tensors": written.copied_tensors,
        "weight_bytes": written.weight_bytes,
        "seconds": start.elapsed().as_secs_f64(),
    });
    println!("{value}");
    Ok(ExitCode::SUCCESS)
}
