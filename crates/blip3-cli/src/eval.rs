//! `blip3 eval`: a benchmark run through the engine (batched, resumable,
//! with a progress bar), then its score and report; `blip3 score`: the same
//! scorers on an existing predictions file.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use blip3_engine::fewshot::{self, Demo};
use blip3_engine::serving::{Engine, EngineConfig, EngineRequest, Event, ImageInput, TokenBudget};
use blip3_engine::{Family, MarkedText, SamplingParams};
use blip3_eval::dataset::{self, captions, vqa, Dataset};
use blip3_eval::requests::{self, RequestOptions};
use blip3_eval::run::{self, Answer, Answerer, EvalRequest, Progress};
use blip3_eval::sampler::ZeroShotDemos;
use blip3_eval::score::ScorerOptions;
use blip3_eval::settings::{self, Settings};
use blip3_eval::{report, DataFormat, PromptStyle, Task};
use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::load;
use crate::fewshot::{few_shot_load_args, placeholders};
use crate::{ChoiceRuleArg, EvalArgs, ScoreArgs, VqaGtArg};

/// The engine as the harness's [`Answerer`]: a batch is submitted whole, so
/// the scheduler decodes its items together.
struct EngineAnswerer {
    engine: Engine,
    family: Family,
    placeholders: usize,
}

impl EngineAnswerer {
    fn prompt(&self, request: &EvalRequest, images: usize) -> MarkedText {
        let demos: Vec<Demo> = request
            .shots
            .iter()
            .map(|s| Demo {
                question: s.question.clone(),
                answer: s.answer.clone(),
            })
            .collect();
        let with_images = request.shots.iter().all(|s| !s.images.is_empty());
        match request.style {
            PromptStyle::FewShotCaption => fewshot::marked_prompt(
                fewshot::Task::Caption,
                &demos,
                None,
                self.placeholders,
                with_images,
            ),
            PromptStyle::FewShotVqa => fewshot::marked_prompt(
                fewshot::Task::Vqa,
                &demos,
                request.question.as_deref(),
                self.placeholders,
                with_images,
            ),
            PromptStyle::Chat => blip3_engine::prompt::marked_chat_prompt(
                request.question.as_deref().unwrap_or_default(),
                None,
                self.family.chat_image_marker(),
                images,
            ),
        }
    }

    fn submit(&self, request: &EvalRequest) -> Result<blip3_engine::serving::Submission, String> {
        let mut images = Vec::new();
        for (i, image) in request
            .shots
            .iter()
            .flat_map(|s| s.images.iter())
            .chain(&request.images)
            .enumerate()
        {
            let bytes = image.read().map_err(|e| e.to_string())?;
            images.push(ImageInput {
                bytes: Arc::unwrap_or_clone(bytes),
                global_view_only: false,
                at: format!("image {}", i + 1),
            });
        }
        let completion = request.style != PromptStyle::Chat;
        let prompt = self.prompt(request, images.len());
        self.engine
            .submit(EngineRequest {
                prompt,
                images,
                max_tokens: TokenBudget::AtMost(request.max_new_tokens),
                sampling: SamplingParams::default(),
                seeded: true,
                n: 1,
                stop: Vec::new(),
                logprobs: false,
                top_logprobs: 0,
                completion,
                ignore_eos: false,
                param: "prompt",
            })
            .map_err(|e| e.message)
    }
}

fn collect(
    submission: Result<blip3_engine::serving::Submission, String>,
) -> Result<String, String> {
    let mut submission = submission?;
    let mut text = String::new();
    while let Some(event) = submission.events.blocking_recv() {
        match event {
            Event::Token { text: piece, .. } => text.push_str(&piece),
            Event::Finish { .. } => {}
            Event::Done { .. } => return Ok(text),
            Event::Error(e) => return Err(e.message),
        }
    }
    Err("the engine stopped before answering".into())
}

impl Answerer for EngineAnswerer {
    fn answer(&mut self, batch: &[EvalRequest]) -> Vec<Result<Answer, String>> {
        let submissions: Vec<_> = batch.iter().map(|r| self.submit(r)).collect();
        batch
            .iter()
            .zip(submissions)
            .map(|(request, submission)| {
                let raw = collect(submission)?;
                let answer = match request.style {
                    PromptStyle::FewShotCaption => {
                        fewshot::postprocess(fewshot::Task::Caption, &raw)
                    }
                    PromptStyle::FewShotVqa => fewshot::postprocess(fewshot::Task::Vqa, &raw),
                    PromptStyle::Chat => raw.clone(),
                };
                Ok(Answer { answer, raw })
            })
            .collect()
    }
}

/// Loads the split to evaluate and, for few-shot tasks, the demonstration pool.
fn load_data(task: &Task, args: &EvalArgs) -> Result<(Dataset, Option<Dataset>)> {
    let images = dataset::image_root(&args.data, args.images.as_deref());
    let train_images =
        |path: &std::path::Path| dataset::image_root(path, args.train_images.as_deref());
    match task.format {
        DataFormat::CocoCaptions => {
            let test = captions::load(&args.data, &images, captions::Split::Named(&args.split))?;
            let train = match &args.train {
                Some(path) => captions::load(path, &train_images(path), captions::Split::Train)?,
                // Karpathy's file holds the training split too.
                None => captions::load(&args.data, &images, captions::Split::OwnTrain)?,
            };
            Ok((test, (!train.items.is_empty()).then_some(train)))
        }
        DataFormat::VqaV2 => {
            let annotations = vqa::annotations_path(&args.data, args.annotations.as_deref())?;
            let test = vqa::load(&args.data, &annotations, &images)?;
            let train = match &args.train {
                Some(path) => {
                    let annotations =
                        vqa::annotations_path(path, args.train_annotations.as_deref())?;
                    Some(vqa::load(path, &annotations, &train_images(path))?)
                }
                None => None,
            };
            Ok((test, train))
        }
        DataFormat::VlmEvalKitTsv => {
            let test = blip3_eval::dataset::tsv::load(task, &args.data, !args.no_md5_check)?;
            Ok((test, None))
        }
    }
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} items, {elapsed} elapsed, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let task = Task::named(&args.task)?;
    let (test, train) = load_data(&task, &args)?;
    if test.items.is_empty() {
        bail!("{}: no items to evaluate", args.data.display());
    }
    let load_args = if task.is_few_shot() {
        few_shot_load_args(&args.load)
    } else {
        args.load.clone()
    };
    eprintln!("loading {} ...", load_args.model.display());
    let pipeline = load(&load_args)?;
    let family = pipeline.family();
    let placeholders = placeholders(&pipeline, args.placeholders);
    let max_new_tokens = args.max_new_tokens.unwrap_or(task.max_new_tokens);
    let zero_shot = if args.no_text_demos {
        ZeroShotDemos::Empty
    } else {
        ZeroShotDemos::TextOnly
    };
    let settings = Settings {
        task: task.name.to_string(),
        model: args.load.model.display().to_string(),
        model_revision: pipeline.feature_fingerprint().to_string(),
        family: format!(
            "{} {}",
            family.name(),
            if pipeline.model().is_base() {
                "base"
            } else {
                "instruct"
            }
        ),
        weight_format: pipeline.model().lm().weight_dtype(),
        quantize: args.load.quantize.map(|q| q.format().name().to_string()),
        data: args.data.display().to_string(),
        data_md5: test.md5.clone(),
        limit: args.limit,
        shots: args.shots,
        seed: args.seed,
        query_set_size: args.query_set_size,
        placeholders,
        zero_shot_text_demos: task.is_few_shot() && args.shots == 0 && !args.no_text_demos,
        max_new_tokens,
        decoding: "greedy".into(),
        scorer: blip3_eval::score::describe(&task, &args.scorer_options()),
    };
    let options = RequestOptions {
        limit: args.limit,
        shots: args.shots,
        seed: args.seed,
        query_set_size: args.query_set_size,
        zero_shot,
        max_new_tokens,
    };
    let requests = requests::build(&task, &test, train.as_ref(), &options)?;
    settings::record_or_check(&args.out, &settings)?;
    let engine = Engine::start(
        pipeline,
        EngineConfig {
            max_batch: args.batch.max(1),
            queue_size: args.batch.max(1) * 2,
            max_pixels: args.load.max_pixels,
            ..EngineConfig::default()
        },
    )
    .context("starting the engine")?;
    let mut answerer = EngineAnswerer {
        engine,
        family,
        placeholders,
    };
    let bar = progress_bar(requests.len());
    bar.set_message(task.title.to_string());
    bar.enable_steady_tick(Duration::from_millis(500));
    let records = run::run(
        &requests,
        &mut answerer,
        &args.out,
        args.batch,
        &mut |p: Progress| {
            bar.set_position(p.done as u64);
        },
    )?;
    bar.finish();
    answerer.engine.stop();
    let judge = args.judge_url.as_ref().map(|url| blip3_eval::judge::Judge {
        url: url.clone(),
        model: args.judge_model.clone(),
        api_key: std::env::var(&args.judge_key_env).ok(),
        timeout: Duration::from_secs(120),
    });
    let scored = blip3_eval::score::score_run(
        &task,
        &records,
        &test.reference,
        &args.scorer_options(),
        judge.as_ref(),
    )?;
    let results = serde_json::json!({
        "settings": settings,
        "metrics": scored.metrics,
        "items": records.len(),
        "failed": scored.summary.failed,
    });
    let results_path = args.out.join("results.json");
    std::fs::write(&results_path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", results_path.display()))?;
    let reference_path = args.out.join("references.json");
    std::fs::write(&reference_path, serde_json::to_string(&test.reference)?)
        .with_context(|| format!("writing {}", reference_path.display()))?;
    let written = report::write(&args.out, &task, &settings, &scored.summary)?;
    for (column, value) in &scored.summary.columns {
        match value {
            Ok(v) => println!("{column}: {v:.2}"),
            Err(note) => println!("{column}: {note}"),
        }
    }
    eprintln!(
        "{} items ({} failed); report: {}",
        records.len(),
        scored.summary.failed,
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn scorer_options(vqa_gt: VqaGtArg, rule: ChoiceRuleArg) -> ScorerOptions {
    use blip3_metrics::vlmevalkit::Rule;
    use blip3_metrics::vqa::GtNormalization;
    ScorerOptions {
        vqa_gt: match vqa_gt {
            VqaGtArg::Official => GtNormalization::Official,
            VqaGtArg::Official2021 => GtNormalization::Official2021,
            VqaGtArg::Openflamingo => GtNormalization::OpenFlamingo,
        },
        rule: match rule {
            ChoiceRuleArg::V2024 => Rule::V2024,
            ChoiceRuleArg::Head => Rule::Head,
        },
    }
}

impl EvalArgs {
    fn scorer_options(&self) -> ScorerOptions {
        scorer_options(self.vqa_gt, self.choice_rule)
    }
}

/// The reference of `blip3 score`: JSON, or a VLMEvalKit TSV turned into
/// the scorer's layout.
fn read_reference(args: &ScoreArgs) -> Result<serde_json::Value> {
    use blip3_metrics::vlmevalkit_tsv::{build_reference, read_tsv, Benchmark};
    let path = &args.reference;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
    {
        let key = args
            .dataset
            .clone()
            .unwrap_or_else(|| default_dataset(&args.task).to_string());
        let benchmark = Benchmark::from_dataset_key(&key)
            .with_context(|| format!("--dataset {key}: not a benchmark scored from a TSV"))?;
        let tsv = read_tsv(path)?;
        return Ok(build_reference(&tsv, benchmark)?);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

fn default_dataset(task: &str) -> &'static str {
    match task {
        "pope" => "POPE",
        "mme" => "MME",
        "mmbench" => "MMBench_DEV_EN",
        "mmmu" => "MMMU_DEV_VAL",
        _ => "SEEDBench_IMG",
    }
}

/// `blip3 score`: one scorer over a predictions file and a reference file.
pub fn score(args: ScoreArgs) -> Result<ExitCode> {
    let preds = blip3_metrics::read_predictions(&args.pred)?;
    let reference = read_reference(&args)?;
    let options = scorer_options(args.vqa_gt, args.choice_rule);
    let value = match (args.task.as_str(), &args.dataset) {
        ("mcq", Some(key)) => {
            let mcq = blip3_metrics::mcq::McqOptions::for_dataset(
                key,
                blip3_metrics::vlmevalkit::ScoreOptions {
                    rule: options.rule,
                    ..Default::default()
                },
            );
            blip3_metrics::mcq::score_json(&preds, &reference, &mcq)?
        }
        (task, _) => blip3_eval::score::score_named(task, &preds, &reference, &options)?,
    };
    if args.json {
        println!("{value}");
    } else {
        let mut shown = value.clone();
        if let Some(o) = shown.as_object_mut() {
            o.remove("per_id");
        }
        println!("{}", serde_json::to_string_pretty(&shown)?);
    }
    Ok(ExitCode::SUCCESS)
}
