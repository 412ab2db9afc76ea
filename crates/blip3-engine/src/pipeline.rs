//! One image + one prompt → stage tensors and generated ids.

use std::path::Path;
use std::time::Instant;

use blip3_model::phi3::KvPrecision;
use blip3_model::weights::{Quantization, WeightDtype};
use blip3_model::Blip3Model;
use blip3_preprocess::decode::DEFAULT_MAX_PIXELS;
use blip3_preprocess::{AspectMode, ImageProcessor, PreprocessedImage, ProcessorConfig, RgbImage};
use blip3_tokenizer::Tokenizer;
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::generation::{StopReason, StopRule};
use crate::prompt::IMAGE_TOKEN;
use crate::sampling::Choice;
use crate::session::GenerationParams;
use crate::EngineError;

/// How to load a model folder.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Where tensors live.
    pub device: Device,
    /// In-memory dtype of matrix weights.
    pub weight_dtype: WeightDtype,
    /// Load-time quantisation of linear layers.
    pub quantization: Option<Quantization>,
    /// Override of the config's `image_aspect_ratio`.
    pub aspect: Option<AspectMode>,
    /// Largest accepted image, in pixels.
    pub max_pixels: u64,
    /// Key/value-cache element type; `None`: F32 with F32 weights, else F16.
    pub kv_cache: Option<KvPrecision>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            weight_dtype: WeightDtype::AsStored,
            quantization: None,
            aspect: None,
            max_pixels: DEFAULT_MAX_PIXELS,
            kv_cache: None,
        }
    }
}

/// Wall-clock seconds per stage of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageTimings {
    /// Tokenisation + anyres preprocessing.
    pub preprocess_s: f64,
    /// ViT over all crops (one batch).
    pub vision_encode_s: f64,
    /// Regrouping + perceiver.
    pub resampler_s: f64,
    /// Splice + prefill + first logits.
    pub prefill_s: f64,
    /// All decode steps after the first token.
    pub decode_s: f64,
    /// From the start of the run to the first generated id.
    pub ttft_s: f64,
    /// Prompt positions after splicing (L).
    pub prefill_tokens: usize,
    /// Generated ids.
    pub generated_tokens: usize,
}

/// Intermediate tensors, named as in the fixture goldens.
#[derive(Debug, Clone)]
pub struct StageTensors {
    /// `[N, 3, S, S]`.
    pub pixel_values: Tensor,
    /// ViT output before regrouping `[N, g², W]`.
    pub vit_tokens: Tensor,
    /// Perceiver input after regrouping `[N, g², W]`.
    pub vision_features: Tensor,
    /// Perceiver text-query input `[min(T,256), D]` (instruct only).
    pub text_embeds: Option<Tensor>,
    /// Perceiver output `[N·Q, D]`.
    pub vision_tokens: Tensor,
    /// LM input `[L, D]`.
    pub inputs_embeds: Tensor,
    /// Logits at the last prompt position `[initial_tokenizer_len + 3]`.
    pub last_logits: Tensor,
}

/// Result of one run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Prompt ids, BOS included.
    pub input_ids: Vec<u32>,
    /// New ids, the stop id included.
    pub generated_ids: Vec<u32>,
    /// Why generation stopped.
    pub stop_reason: StopReason,
    /// Decoded answer (special tokens skipped, cut at `<|end|>`).
    pub text: String,
    /// Per-stage timings.
    pub timings: StageTimings,
    /// How the image was cut.
    pub image: ImageInfo,
    /// Stage tensors, when requested.
    pub stages: Option<StageTensors>,
}

/// What preprocessing decided for the image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    /// Original (W, H).
    pub image_size: (usize, usize),
    /// Chosen pinpoint (w, h).
    pub best_resolution: (usize, usize),
    /// Grid (npw, nph).
    pub grid: (usize, usize),
    /// Crops N.
    pub num_crops: usize,
}

impl ImageInfo {
    /// The decisions recorded in a preprocessed image.
    pub fn of(prepared: &PreprocessedImage) -> Self {
        Self {
            image_size: prepared.image_size,
            best_resolution: prepared.best_resolution,
            grid: prepared.grid,
            num_crops: prepared.num_crops,
        }
    }
}

/// A loaded model folder ready to answer questions about images.
pub struct Pipeline {
    model: Blip3Model,
    tokenizer: Tokenizer,
    processor: ImageProcessor,
    aspect: AspectMode,
    stop: StopRule,
    image_token_id: u32,
    max_pixels: u64,
}

fn read_generation_eos(dir: &Path, fallback: u32) -> Vec<u32> {
    let path = dir.join("generation_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return vec![fallback];
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("ignoring unparsable {}: {e}", path.display());
            return vec![fallback];
        }
    };
    match json.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32)
            .collect(),
        _ => vec![fallback],
    }
}

impl Pipeline {
    /// Loads config, weights, tokenizer and preprocessor of a model folder.
    pub fn load(dir: &Path, options: &PipelineOptions) -> Result<Self, EngineError> {
        let mut model = Blip3Model::load(
            dir,
            &options.device,
            options.weight_dtype,
            options.quantization,
        )?;
        if let Some(precision) = options.kv_cache {
            model.lm_mut().set_kv_precision(precision);
        }
        let tokenizer = Tokenizer::from_dir(dir)?;
        let pp_config = ProcessorConfig::from_file(&dir.join("preprocessor_config.json"))?;
        let processor = ImageProcessor::new(&pp_config)?;
        let crop = model.config().vision().image_size;
        if processor.crop_size() != crop {
            return Err(EngineError::Request(format!(
                "preprocessor_config.json crop size {} differs from the vision tower's {crop}",
                processor.crop_size()
            )));
        }
        let image_token_id = tokenizer
            .token_to_id(IMAGE_TOKEN)
            .ok_or_else(|| EngineError::Request("the tokenizer has no <image> token".into()))?;
        let text = &model.config().text_config;
        if image_token_id as usize != text.initial_tokenizer_len {
            tracing::warn!(
                "<image> is id {image_token_id}, expected initial_tokenizer_len = {}",
                text.initial_tokenizer_len
            );
        }
        let stop = StopRule {
            end_id: tokenizer.token_to_id("<|end|>"),
            eos_ids: read_generation_eos(dir, text.eos_token_id),
        };
        let aspect = options.aspect.unwrap_or(
            if model.config().vision_encoder_config.image_aspect_ratio == "anyres" {
                AspectMode::Anyres
            } else {
                AspectMode::Pad
            },
        );
        Ok(Self {
            model,
            tokenizer,
            processor,
            aspect,
            stop,
            image_token_id,
            max_pixels: options.max_pixels,
        })
    }

    /// The model.
    pub fn model(&self) -> &Blip3Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Largest accepted image, in pixels.
    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// Decodes an image file with this pipeline's pixel limit.
    pub fn load_image(&self, path: &Path) -> Result<RgbImage, EngineError> {
        Ok(blip3_preprocess::decode::load_path(path, self.max_pixels)?)
    }

    /// Preprocesses an image as the model expects.
    pub fn preprocess(&self, image: &RgbImage) -> PreprocessedImage {
        self.processor.process(image, self.aspect)
    }

    /// Runs the full pipeline on `prompt` (already templated; it should hold one
    /// `<image>`) and greedily generates up to `max_new_tokens` ids. `on_token`
    /// sees each id as it is produced. With `capture`, stage tensors are kept.
    pub fn run(
        &self,
        image: &RgbImage,
        prompt: &str,
        max_new_tokens: usize,
        capture: bool,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<RunOutput, EngineError> {
        self.generate(
            image,
            prompt,
            &GenerationParams::greedy(max_new_tokens),
            capture,
            &mut |c: &Choice| on_token(c.id),
        )
    }

    /// [`run`](Self::run) with any [`GenerationParams`]; `on_choice` sees each
    /// chosen token with its log-probabilities.
    pub fn generate(
        &self,
        image: &RgbImage,
        prompt: &str,
        params: &GenerationParams,
        capture: bool,
        on_choice: &mut dyn FnMut(&Choice),
    ) -> Result<RunOutput, EngineError> {
        let start = Instant::now();
        let device = self.model.device();
        let input_ids = self.tokenizer.encode(prompt, true);
        let prepared = self.preprocess(image);
        let mut timings = StageTimings {
            preprocess_s: start.elapsed().as_secs_f64(),
            ..Default::default()
        };

        let t = Instant::now();
        let (encoded, pixel_values, vit_tokens) = self.encode_image_stages(&prepared)?;
        timings.vision_encode_s = t.elapsed().as_secs_f64();

        // Perceiver, then the splice (a copy, negligible, timed with it).
        let t = Instant::now();
        let (inputs_embeds, text_embeds, vision_tokens) =
            self.prompt_embeds_stages(&input_ids, &encoded)?;
        timings.resampler_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut seq = self.start(&inputs_embeds, &input_ids, params)?;
        let last_logits = Tensor::from_slice(seq.logits(), seq.logits().len(), device)?;
        timings.prefill_s = t.elapsed().as_secs_f64();
        timings.prefill_tokens = seq.prompt_positions;

        let t = Instant::now();
        while seq.finished.is_none() {
            let choice = self.choose(&mut seq)?;
            if seq.generated.len() == 1 {
                timings.ttft_s = start.elapsed().as_secs_f64();
            }
            on_choice(&choice);
            self.step(&mut [&mut seq])?;
        }
        timings.decode_s = t.elapsed().as_secs_f64();
        timings.generated_tokens = seq.generated.len();

        let stages = capture.then(|| StageTensors {
            pixel_values,
            vit_tokens,
            vision_features: encoded.features,
            text_embeds,
            vision_tokens,
            inputs_embeds,
            last_logits,
        });
        Ok(RunOutput {
            text: self.tokenizer.decode_answer(&seq.generated),
            input_ids,
            stop_reason: seq.finished.unwrap_or(StopReason::MaxNewTokens),
            generated_ids: seq.generated,
            timings,
            image: encoded.info,
            stages,
        })
    }

    /// The `<image>` token id.
    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// The ids that end generation.
    pub fn stop_rule(&self) -> &StopRule {
        &self.stop
    }

    /// The aspect mode images are preprocessed with by default.
    pub fn aspect(&self) -> AspectMode {
        self.aspect
    }

    /// Preprocesses an image with an explicit aspect mode (`Pad` = the
    /// global view only, 128 visual tokens).
    pub fn preprocess_with(&self, image: &RgbImage, aspect: AspectMode) -> PreprocessedImage {
        self.processor.process(image, aspect)
    }
}
