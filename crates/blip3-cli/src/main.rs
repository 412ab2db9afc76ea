//! `blip3`: run BLIP-3 from a Hugging Face model folder.

mod commands;
mod eval;
mod fewshot;
mod presets;
mod run;
mod serve;

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
    /// Write a pre-quantised (Q8_0/Q4_0) copy of a model folder that loads without re-quantising.
    Quantize(QuantizeArgs),
    /// Ask about an image and stream the answer (or caption a JSONL batch).
    Run(RunArgs),
    /// Serve the OpenAI chat-completions API over HTTP.
    Serve(ServeArgs),
    /// Few-shot captioning or VQA with a base model (OpenFlamingo prompts).
    Fewshot(FewshotArgs),
    /// Run a benchmark of the model card (batched, resumable) and write its score and report.
    Eval(EvalArgs),
    /// Score an existing predictions file with the benchmark scorers.
    Score(ScoreArgs),
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Benchmark: coco, nocaps, textcaps, okvqa, textvqa, vizwiz, vqav2 (few-shot,
    /// base models); seed, mmbench, mme, mmstar, mmmu, mmvet, mathvista, scienceqa,
    /// pope, ai2d (VLMEvalKit TSVs, instruct models).
    #[arg(long)]
    task: String,
    /// The split to evaluate: COCO-style caption JSON (or Karpathy's split file),
    /// a VQAv2-style questions JSON, or a VLMEvalKit TSV.
    #[arg(long)]
    data: PathBuf,
    /// VQA: the annotations JSON (default: found beside --data).
    #[arg(long)]
    annotations: Option<PathBuf>,
    /// Folder of the images named by --data (default: --data's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Karpathy split to evaluate.
    #[arg(long, default_value = "test")]
    split: String,
    /// Few-shot demonstration pool, in --data's format (default: the
    /// `train` split of a Karpathy file).
    #[arg(long)]
    train: Option<PathBuf>,
    /// VQA: the pool's annotations JSON (default: found beside --train).
    #[arg(long)]
    train_annotations: Option<PathBuf>,
    /// Folder of the pool's images (default: --train's folder).
    #[arg(long)]
    train_images: Option<PathBuf>,
    /// Evaluate this many items (few-shot: drawn as OpenFlamingo's --num_samples;
    /// others: the first ones, MMBench counting questions).
    #[arg(long)]
    limit: Option<usize>,
    /// Demonstrations per item (few-shot tasks).
    #[arg(long, default_value_t = 0)]
    shots: usize,
    /// Trial seed of the few-shot sampler.
    #[arg(long, default_value_t = 42)]
    seed: u32,
    /// Pool items the demonstrations are drawn from (OpenFlamingo's default 2048).
    #[arg(long, default_value_t = 2048)]
    query_set_size: usize,
    /// Zero shots without OpenFlamingo's two text-only demonstrations.
    #[arg(long)]
    no_text_demos: bool,
    /// Put Q − 1 `<image placeholder>` tokens after every `<image>` (the model card's prompts).
    #[arg(long)]
    placeholders: bool,
    /// Answer budget (default: 20 caption, 5 VQA, 1024 instruct benchmarks).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Items submitted to the engine together.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// VQA ground-truth normalisation: official (the VQA evaluation code),
    /// official-2021, or openflamingo (OpenFlamingo's copy, which normalises every answer).
    #[arg(long, value_enum, default_value_t = VqaGtArg::Official)]
    vqa_gt: VqaGtArg,
    /// VLMEvalKit answer-extraction rule: 2024 (the r-v1 numbers) or head.
    #[arg(long, value_enum, default_value_t = ChoiceRuleArg::V2024)]
    choice_rule: ChoiceRuleArg,
    /// Do not check the TSV's MD5 against VLMEvalKit's.
    #[arg(long)]
    no_md5_check: bool,
    /// OpenAI-compatible endpoint (`http://host:port/v1`) that grades the
    /// judge benchmarks (mmvet, mathvista); off by default.
    #[arg(long)]
    judge_url: Option<String>,
    /// Model name sent to the judge.
    #[arg(long, default_value = "gpt-4-turbo")]
    judge_model: String,
    /// Environment variable holding the judge's API key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    judge_key_env: String,
    /// Run folder: run.json, predictions.jsonl (appended; a rerun resumes),
    /// results.json, report.md, report.html and the charts.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct ScoreArgs {
    /// Scorer: cider, vqa, okvqa, pope, mme, mmbench, mcq, mmmu.
    #[arg(long)]
    task: String,
    /// Predictions JSONL: one {"id": ..., "answer": "..."} per line.
    #[arg(long)]
    pred: PathBuf,
    /// References JSON: {id: [reference strings]} for cider and vqa (the 10
    /// human answers); task-specific objects for the others (see the README).
    /// For pope, mme, mmbench, mcq and mmmu it may also be the benchmark's
    /// VLMEvalKit TSV.
    #[arg(long = "ref")]
    reference: PathBuf,
    /// VLMEvalKit dataset key of a TSV given as --ref (default by task: POPE,
    /// MME, MMBench_DEV_EN, SEEDBench_IMG, MMMU_DEV_VAL); it also selects
    /// VLMEvalKit's per-dataset rules for mcq.
    #[arg(long)]
    dataset: Option<String>,
    /// VQA ground-truth normalisation.
    #[arg(long, value_enum, default_value_t = VqaGtArg::Official)]
    vqa_gt: VqaGtArg,
    /// VLMEvalKit answer-extraction rule.
    #[arg(long, value_enum, default_value_t = ChoiceRuleArg::V2024)]
    choice_rule: ChoiceRuleArg,
    /// Print the corpus metric and the per-item scores (`per_id`) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum VqaGtArg {
    /// GT-Vision-Lab's vqaEval.py as most harnesses copy it.
    Official,
    /// vqaEval.py after its 2021 fix.
    #[value(name = "official-2021")]
    Official2021,
    /// OpenFlamingo's vqa_metric.py (the BLIP-3 pre-training table's harness).
    Openflamingo,
}

#[derive(Clone, Copy, ValueEnum)]
enum ChoiceRuleArg {
    #[value(name = "2024")]
    V2024,
    Head,
}

#[derive(Args)]
struct FewshotArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// JSONL demonstrations, one {"image": PATH, "caption": TEXT} (caption) or
    /// {"image": PATH, "question": TEXT, "answer": TEXT} (vqa) per line; paths
    /// are relative to this file.
    #[arg(long)]
    demos: PathBuf,
    /// The query image.
    #[arg(long)]
    image: PathBuf,
    /// caption or vqa.
    #[arg(long, value_enum)]
    task: TaskArg,
    /// The query's question (vqa).
    #[arg(long, required_if_eq("task", "vqa"))]
    question: Option<String>,
    /// Use the first K demonstrations (default: all).
    #[arg(long)]
    shots: Option<usize>,
    /// Put Q − 1 `<image placeholder>` tokens after every `<image>` (the model card's prompts).
    #[arg(long)]
    placeholders: bool,
    /// Most new tokens (default: 20 for caption, 5 for vqa).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Print one JSON object (prompt, raw output, answer, ids, timings).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TaskArg {
    Caption,
    Vqa,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Image files then the question: `a.png [b.png ...] "question"` (the
    /// last argument is the question when it is not an existing file; default
    /// "Describe this image."). Not with --batch.
    #[arg(required_unless_present = "batch", conflicts_with = "batch", num_args = 1..)]
    inputs: Vec<String>,
    /// Use the question as the whole prompt, without the chat frame (base models).
    #[arg(long)]
    raw_prompt: bool,
    /// Replace the default system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most new tokens to generate.
    #[arg(long, default_value_t = 768)]
    max_new_tokens: usize,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    /// JSONL input, one {"image": PATH | "images": [PATH, ...], "question"?: TEXT, "id"?: ANY} per line.
    #[arg(long, requires = "out")]
    batch: Option<PathBuf>,
    /// JSONL output for --batch (appended; lines already answered are skipped,
    /// so an interrupted batch resumes where it stopped).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 = any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Model name reported by /v1/models (default: the folder's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Requests that may wait for the engine before new ones get 429.
    #[arg(long, default_value_t = 64)]
    queue_size: usize,
    /// Most sequences decoded together (continuous batching).
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_request_bytes: usize,
    /// Largest image file, in bytes.
    #[arg(long, default_value_t = 20 << 20)]
    max_image_bytes: usize,
    /// Folder that file:// image URLs may read from (otherwise refused).
    #[arg(long)]
    media_root: Option<PathBuf>,
    /// Fetch http(s):// image URLs (size-capped, at most 3 redirects). Hosts
    /// that resolve to loopback, private, link-local or other non-public
    /// addresses are refused, on every redirect hop.
    #[arg(long)]
    allow_remote_media: bool,
    /// A host (name or address, as written in image URLs) that remote image
    /// fetches may reach even though it is not public, e.g. an intranet image
    /// store; repeat for several.
    #[arg(long = "allow-media-host", value_name = "HOST")]
    allow_media_hosts: Vec<String>,
    /// Time limit for fetching one remote image, in seconds.
    #[arg(long, default_value_t = 10)]
    remote_media_timeout_s: u64,
    /// RAM budget of the image-embedding cache, in MiB.
    #[arg(long, default_value_t = 512)]
    vision_cache_mib: usize,
    /// Disk tier of the image-embedding cache.
    #[arg(long)]
    vision_cache_dir: Option<PathBuf>,
    /// Most images in one request, over all its image parts (over it: 400
    /// too_many_images; 0 = text only).
    #[arg(long, default_value_t = 8)]
    max_images: usize,
}

/// Options shared by commands that run the model on images and a question.
#[derive(Args, Clone)]
struct ModelArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Image file (PNG, JPEG, WebP, GIF, BMP); repeat for several images, in
    /// `<image>` order.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// The question about the images (with --raw-prompt: the whole prompt,
    /// one `<image>` per image, no chat frame).
    #[arg(long)]
    prompt: String,
    /// Replace the default system prompt.
    #[arg(long, conflicts_with = "raw_prompt")]
    system: Option<String>,
    /// Use --prompt as is, without the chat frame (base models, few-shot).
    #[arg(long)]
    raw_prompt: bool,
}

/// How to load a model folder.
#[derive(Args, Clone)]
struct LoadArgs {
    /// Model folder (config.json, safetensors, tokenizer, preprocessor config), or a
    /// Hugging Face id such as Salesforce/xgen-mm-phi3-mini-instruct-r-v1[@revision]
    /// (downloaded into the HF cache; HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN apply).
    #[arg(long)]
    model: PathBuf,
    /// In-memory weight dtype: as stored, f32 (reference precision) or bf16 (half memory).
    #[arg(long, value_enum, default_value_t = DtypeArg::Auto)]
    dtype: DtypeArg,
    /// Quantise linear-layer weights at load time (ViT, perceiver, language model; the token embedding stays as stored).
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
    /// Key/value-cache precision: auto (f32 with f32 weights, else f16; `dump`: f32), f32 or f16.
    #[arg(long, value_enum, default_value_t = KvArg::Auto)]
    kv_cache: KvArg,
    /// Splice only the first image at the first `<image>`, later ones staying
    /// text: the r-v1 instruct reference's behaviour (default: every `<image>`).
    #[arg(long)]
    first_image_only: bool,
    /// Hide the anyres padding from the perceiver: auto (the family's choice:
    /// r-v1 off, v1.5 on), on or off.
    #[arg(long, value_enum, default_value_t = SwitchArg::Auto)]
    padding_mask: SwitchArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum SwitchArg {
    Auto,
    On,
    Off,
}

/// Token selection (greedy unless --temperature > 0).
#[derive(Args, Clone)]
struct SamplingArgs {
    /// Softmax temperature; 0 = greedy (the reference's decoding).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample only among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: smallest set of tokens reaching this probability.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Penalty on tokens already present (1 = none).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Seed of the sampling stream (same seed → same answer).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
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
    /// Model family of --preset: blip3-r1 (r-v1) or xgenmm-v15 (v1.5).
    #[arg(long, value_enum, default_value_t = FamilyArg::Blip3R1)]
    family: FamilyArg,
    /// A base model: r-v1 omits text_projection; both write a base generation config (eos 32000).
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
struct QuantizeArgs {
    /// Source model folder (or Hugging Face id), F32/BF16/F16 weights.
    #[arg(long)]
    model: PathBuf,
    /// Block format to store the linear-layer weights in.
    #[arg(long, value_enum)]
    to: QuantArg,
    /// Output folder (created; must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
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
    /// GGML Q4_K (4-bit super-blocks of 256 with 6-bit sub-block scales and minimums).
    #[value(name = "q4_k")]
    Q4K,
}

#[derive(Clone, Copy, ValueEnum)]
enum KvArg {
    /// F32 with F32 weights (exact), F16 otherwise.
    Auto,
    /// 4 bytes per element.
    F32,
    /// 2 bytes per element (half the decode-time cache reads).
    F16,
}

#[derive(Clone, Copy, ValueEnum)]
enum AspectArg {
    Anyres,
    Pad,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum FamilyArg {
    /// BLIP-3 r-v1 (open_clip ViT-H/14).
    #[value(name = "blip3-r1")]
    Blip3R1,
    /// xGen-MM v1.5 (SigLIP so400m).
    #[value(name = "xgenmm-v15")]
    XgenmmV15,
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    /// The family's real size (r-v1: 4.59 B parameters; v1.5: 4.36 B).
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
    // Layers reuse the previous layer's freed buffers instead of faulting in
    // fresh zeroed pages (`BLIP3_MALLOC=default` keeps the C library's own).
    if std::env::var("BLIP3_MALLOC").as_deref() != Ok("default") {
        blip3_kernels::allocator::retain_freed_memory();
    }
    let result = match cli.command {
        Command::Generate(a) => commands::generate(a),
        Command::Dump(a) => commands::dump(a),
        Command::InitRandom(a) => commands::init_random(a),
        Command::Compare(a) => commands::compare(a),
        Command::Bench(a) => commands::bench(a),
        Command::Bandwidth(a) => commands::bandwidth(a),
        Command::Quantize(a) => commands::quantize(a),
        Command::Run(a) => run::run(a),
        Command::Serve(a) => serve::serve(a),
        Command::Fewshot(a) => fewshot::fewshot(a),
        Command::Eval(a) => eval::eval(a),
        Command::Score(a) => eval::score(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
