//! `blip3`: run BLIP-3 from a Hugging Face model folder.

mod commands;
mod presets;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// BLIP-3 (xGen-MM) inference engine.
#[derive(Parser)]
#[command(name = "blip3", version, about)]
struct Cli {
    /// Log more (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question about an image.
    Generate(GenerateArgs),
    /// Run the pipeline and write every stage tensor (parity harness).
    Dump(DumpArgs),
    /// Write a random-weight model folder in the real checkpoint layout.
    InitRandom(InitRandomArgs),
    /// Compare a dump against a golden with the fixture's tolerance rule.
    Compare(CompareArgs),
    /// Time every stage over repeated runs (medians), with peak memory.
    Bench(BenchArgs),
    /// Measure memory read bandwidth on one thread and on all cores.
    Bandwidth(BandwidthArgs),
}

/// Options shared by commands that run the model.
#[derive(Args, Clone)]
struct ModelArgs {
    /// Model folder (config.json, safetensors, tokenizer, preprocessor config).
    #[arg(long)]
    model: PathBuf,
    /// Image file (PNG, JPEG, WebP, GIF, BMP).
    #[arg(long)]
    image: PathBuf,
    /// The question about the image.
    #[arg(long)]
    prompt: String,
    /// Replace the default system prompt.
    #[arg(long)]
    system: Option<String>,
    /// In-memory weight dtype: as stored, f32 (reference precision) or bf16 (half memory).
    #[arg(long, value_enum, default_value_t = DtypeArg::Auto)]
    dtype: DtypeArg,
    /// Quantise linear-layer weights at load time (ViT, perceiver, language model).
    #[arg(long, value_enum)]
    quantize: Option<QuantArg>,
    /// Image cropping: the config's choice, anyres (global + grid) or pad (one crop).
    #[arg(long, value_enum)]
    aspect: Option<AspectArg>,
    /// Reject images with more pixels than this.
    #[arg(long, default_value_t = blip3_preprocess::decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Worker threads for tensor kernels (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Most new tokens to generate.
    #[arg(long, default_value_t = 768)]
    max_new_tokens: usize,
    /// Print one JSON object (text, ids, stop reason, timings) instead of the text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DumpArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Most new tokens to generate.
    #[arg(long, default_value_t = 8)]
    max_new_tokens: usize,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct InitRandomArgs {
    /// Copy the configuration (and tokenizer files) of this model folder.
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    like: Option<PathBuf>,
    /// Use a built-in configuration.
    #[arg(long, value_enum)]
    preset: Option<PresetArg>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stored dtype.
    #[arg(long, value_enum, default_value_t = StoreArg::F32)]
    dtype: StoreArg,
    /// Omit text_projection (the base model's perceiver).
    #[arg(long)]
    base: bool,
    /// Output folder (created; must be empty or absent).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// New tokens per run (the decode rate is measured over them).
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    /// Timed runs (after the warm-up runs); medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Untimed warm-up runs first (page in the weights, settle the allocator).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BandwidthArgs {
    /// Buffer size in GiB (well above the caches).
    #[arg(long, default_value_t = 2.0)]
    gib: f64,
    /// Passes per measurement (best is kept).
    #[arg(long, default_value_t = 5)]
    passes: usize,
}

#[derive(Args)]
struct CompareArgs {
    /// Golden safetensors file.
    #[arg(long)]
    golden: PathBuf,
    /// Candidate safetensors file (e.g. from `blip3 dump`).
    #[arg(long)]
    candidate: PathBuf,
    /// Relative tolerance: max |Δ| ≤ tol × max(1, max |golden|).
    #[arg(long, default_value_t = blip3_engine::parity::FIXTURE_REL_TOL)]
    rel_tol: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    Auto,
    F32,
    Bf16,
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantArg {
    /// GGML Q8_0 (int8 blocks of 32 with an F16 scale).
    #[value(name = "q8_0")]
    Q8_0,
    /// GGML Q4_0 (4-bit blocks of 32 with an F16 scale).
    #[value(name = "q4_0")]
    Q4_0,
}

#[derive(Clone, Copy, ValueEnum)]
enum AspectArg {
    Anyres,
    Pad,
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    /// blip3-phi3-mini-instruct-r-v1 at its real size (4.59 B parameters).
    Full,
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreArg {
    F32,
    Bf16,
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Generate(a) => commands::generate(a),
        Command::Dump(a) => commands::dump(a),
        Command::InitRandom(a) => commands::init_random(a),
        Command::Compare(a) => commands::compare(a),
        Command::Bench(a) => commands::bench(a),
        Command::Bandwidth(a) => commands::bandwidth(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
