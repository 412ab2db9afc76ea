//! One image + one prompt → stage tensors and generated ids.

use std::path::Path;
use std::time::Instant;

use blip3_model::anyres::regroup_features;
use blip3_model::weights::{Quantization, WeightDtype};
use blip3_model::Blip3Model;
use blip3_preprocess::decode::DEFAULT_MAX_PIXELS;
use blip3_preprocess::{AspectMode, ImageProcessor, PreprocessedImage, ProcessorConfig, RgbImage};
use blip3_tokenizer::Tokenizer;
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::generation::{argmax, StopReason, StopRule};
use crate::prompt::IMAGE_TOKEN;
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
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            weight_dtype: WeightDtype::AsStored,
            quantization: None,
            aspect: None,
            max_pixels: DEFAULT_MAX_PIXELS,
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
#[derive(Debug, Clone, Serialize)]
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
        let model = Blip3Model::load(
            dir,
            &options.device,
            options.weight_dtype,
            options.quantization,
        )?;
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
        let start = Instant::now();
        let device = self.model.device();
        let input_ids = self.tokenizer.encode(prompt, true);
        let mut prepared = self.preprocess(image);
        let s = prepared.crop_size;
        let pixel_values = Tensor::from_vec(
            std::mem::take(&mut prepared.pixel_values),
            (prepared.num_crops, 3, s, s),
            device,
        )?;
        self.model.check_pixels(&pixel_values)?;
        let mut timings = StageTimings {
            preprocess_s: start.elapsed().as_secs_f64(),
            ..Default::default()
        };

        let t = Instant::now();
        let vit_tokens = self.model.vision().forward(&pixel_values)?;
        timings.vision_encode_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let g = self.model.vision().config().grid();
        let vision_features = regroup_features(&vit_tokens, prepared.grid, g)?;
        let text_embeds = self.model.text_queries(&input_ids)?;
        let resampled = self
            .model
            .resampler()
            .forward(&vision_features, text_embeds.as_ref())?;
        let (n, q, d) = resampled.dims3()?;
        let vision_tokens = resampled.reshape((n * q, d))?;
        timings.resampler_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let lm = self.model.lm();
        let inputs_embeds = self
            .model
            .splice(&input_ids, &vision_tokens, self.image_token_id)?;
        let len = inputs_embeds.dim(0)?;
        let context = lm.config().max_position_embeddings;
        if len >= context {
            return Err(EngineError::Request(format!(
                "prompt of {len} positions (text + {} visual tokens) does not fit the {context}-token context",
                n * q
            )));
        }
        let max_new_tokens = max_new_tokens.min(context - len);
        let mut cache = lm.new_cache();
        let hidden = lm.forward(&inputs_embeds, &mut cache)?;
        let mut logits = lm.logits(&hidden.narrow(0, len - 1, 1)?)?.squeeze(0)?;
        let last_logits = logits.clone();
        timings.prefill_s = t.elapsed().as_secs_f64();
        timings.prefill_tokens = len;

        let t = Instant::now();
        let mut generated = Vec::new();
        let mut stop_reason = StopReason::MaxNewTokens;
        while generated.len() < max_new_tokens {
            let id = argmax(&logits)?;
            if generated.is_empty() {
                timings.ttft_s = start.elapsed().as_secs_f64();
            }
            generated.push(id);
            on_token(id);
            if let Some(reason) = self.stop.check(id) {
                stop_reason = reason;
                break;
            }
            if generated.len() == max_new_tokens {
                break;
            }
            let embed = lm.embed(&[id])?;
            let hidden = lm.forward(&embed, &mut cache)?;
            logits = lm.logits(&hidden)?.squeeze(0)?;
        }
        timings.decode_s = t.elapsed().as_secs_f64();
        timings.generated_tokens = generated.len();

        let stages = capture.then(|| StageTensors {
            pixel_values,
            vit_tokens,
            vision_features,
            text_embeds,
            vision_tokens,
            inputs_embeds,
            last_logits,
        });
        Ok(RunOutput {
            text: self.tokenizer.decode_answer(&generated),
            input_ids,
            generated_ids: generated,
            stop_reason,
            timings,
            image: ImageInfo {
                image_size: prepared.image_size,
                best_resolution: prepared.best_resolution,
                grid: prepared.grid,
                num_crops: prepared.num_crops,
            },
            stages,
        })
    }
}
