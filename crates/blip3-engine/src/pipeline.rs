//! Images + one prompt → stage tensors and generated ids, for every family
//! member (the model crate's seam decides what differs).

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use blip3_model::phi3::KvPrecision;
use blip3_model::weights::{Quantization, WeightDtype};
use blip3_model::{Family, SpliceMode, VisionLanguageModel};
use blip3_preprocess::decode::DEFAULT_MAX_PIXELS;
use blip3_preprocess::{AspectMode, ImageProcessor, PreprocessedImage, ProcessorConfig, RgbImage};
use blip3_tokenizer::{MarkedText, TextKind, Tokenizer};
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::generation::{StopReason, StopRule};
use crate::prompt::{END_OF_CHUNK_TOKEN, IMAGE_TOKEN};
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
    /// Which `<image>` tokens get visual tokens (every one by default).
    pub splice: SpliceMode,
    /// Hide the anyres padding from the perceiver; `None`: the family's
    /// default (r-v1 no, v1.5 yes).
    pub padding_mask: Option<bool>,
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
            splice: SpliceMode::default(),
            padding_mask: None,
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

/// Intermediate tensors, named as in the fixture goldens; with several images
/// the per-crop tensors are concatenated image by image (ΣN crops).
#[derive(Debug, Clone)]
pub struct StageTensors {
    /// `[ΣN, 3, S, S]`.
    pub pixel_values: Tensor,
    /// Tower output before regrouping `[ΣN, g², C]`.
    pub vit_tokens: Tensor,
    /// Perceiver input after regrouping `[ΣN, g², C]`.
    pub vision_features: Tensor,
    /// The padding mask the perceiver applied `[ΣN, g²]` (when it masks).
    pub vision_attn_mask: Option<Tensor>,
    /// Perceiver text-query input `[min(T,256), D]` (r-v1 instruct only).
    pub text_embeds: Option<Tensor>,
    /// Perceiver output `[ΣN·Q, D]`, image by image, crop-major.
    pub vision_tokens: Tensor,
    /// Rows spliced at each `<image>` (N_k·Q).
    pub image_token_counts: Vec<usize>,
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
    /// How each image was cut, in prompt order.
    pub images: Vec<ImageInfo>,
    /// Visual tokens spliced per image (N_k·Q), in prompt order.
    pub image_token_counts: Vec<usize>,
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

/// A loaded model folder ready to answer questions about images: the
/// engine's main entry point.
///
/// ```
/// use blip3_engine::{GenerationParams, Pipeline, PipelineOptions};
///
/// # fn main() -> Result<(), blip3_engine::EngineError> {
/// # let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny");
/// # let (model_dir, image_path) = (fixture.join("model"), fixture.join("images/v2_grid2x2_100x90.png"));
/// // A Hugging Face model folder (config.json, safetensors, tokenizer).
/// let pipeline = Pipeline::load(&model_dir, &PipelineOptions::default())?;
/// let image = pipeline.load_image(&image_path)?;
/// // The family's chat frame with one image marker per image.
/// let prompt = pipeline.chat_prompt("What is shown in this image?", None, 1);
/// let params = GenerationParams::greedy(8);
/// let out = pipeline.generate(&[image], &prompt, &params, false, &mut |_| {})?;
/// println!("{:?} ({}, {} ids)", out.text, out.stop_reason.label(), out.generated_ids.len());
/// assert!(!out.generated_ids.is_empty() && out.generated_ids.len() <= 8);
/// # Ok(())
/// # }
/// ```
pub struct Pipeline {
    model: VisionLanguageModel,
    tokenizer: Tokenizer,
    processor: ImageProcessor,
    aspect: AspectMode,
    stop: StopRule,
    completion_stop: StopRule,
    image_token_id: u32,
    max_pixels: u64,
    splice: SpliceMode,
    padding_mask: bool,
    fingerprint: String,
}

/// SHA-256 (hex) over what decides an image's vision-tower output: the
/// model's configuration files, each weight file's name, size and
/// modification time, and the load options that change the numbers (weight
/// dtype, quantisation, device, aspect mode). Stable across builds and Rust
/// versions, unlike `DefaultHasher`.
fn fingerprint(dir: &Path, options: &PipelineOptions, aspect: AspectMode) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("blip3-rs image features", b"1");
    for name in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors.index.json",
    ] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            field(name, &bytes);
        }
    }
    let mut weights: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .collect();
    weights.sort_by_key(|e| e.file_name());
    for entry in weights {
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let mut value = meta.len().to_le_bytes().to_vec();
        value.extend_from_slice(&modified.to_le_bytes());
        field(&entry.file_name().to_string_lossy(), &value);
    }
    field("dtype", format!("{:?}", options.weight_dtype).as_bytes());
    field(
        "quantization",
        format!("{:?}", options.quantization).as_bytes(),
    );
    field(
        "device",
        format!("{:?}", options.device.location()).as_bytes(),
    );
    field("aspect", format!("{aspect:?}").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
        let mut model = VisionLanguageModel::load(
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
        let mut processor = ImageProcessor::new(&pp_config)?;
        if let Some(grids) = &model.config().vision_encoder_config.anyres_grids {
            let pinpoints: Vec<(usize, usize)> = grids.iter().map(|&[w, h]| (w, h)).collect();
            processor = processor.with_pinpoints(pinpoints)?;
        }
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
        // The generation config's eos, plus the LM's own <|endoftext|>: the
        // v1.5 reference stops on either 32007 or 32000.
        let mut eos_ids = read_generation_eos(dir, text.eos_token_id);
        if !eos_ids.contains(&text.eos_token_id) {
            eos_ids.push(text.eos_token_id);
        }
        let stop = StopRule {
            end_id: tokenizer.token_to_id("<|end|>"),
            eos_ids: eos_ids.clone(),
        };
        // Raw (base-model) prompts end a chunk with <|endofchunk|> and never
        // rely on <|end|> (family spec §1.7).
        let mut completion_eos: Vec<u32> = Vec::new();
        for id in tokenizer
            .token_to_id(END_OF_CHUNK_TOKEN)
            .into_iter()
            .chain(eos_ids.iter().copied())
            .filter(|&id| Some(id) != stop.end_id)
        {
            if !completion_eos.contains(&id) {
                completion_eos.push(id);
            }
        }
        let completion_stop = StopRule {
            end_id: None,
            eos_ids: completion_eos,
        };
        // Base checkpoints run one squashed crop per image (family spec §1.5):
        // r-v1 base has no text_projection, v1.5 base ships `"grids": null`.
        let base = model.is_base() || pp_config.declares_no_grid();
        let aspect = options.aspect.unwrap_or(
            if model.config().vision_encoder_config.aspect_ratio() == "anyres" && !base {
                AspectMode::Anyres
            } else {
                AspectMode::Pad
            },
        );
        let padding_mask = options
            .padding_mask
            .unwrap_or(model.family().masks_padding());
        let fingerprint = fingerprint(dir, options, aspect);
        Ok(Self {
            model,
            tokenizer,
            processor,
            aspect,
            stop,
            completion_stop,
            image_token_id,
            max_pixels: options.max_pixels,
            splice: options.splice,
            padding_mask,
            fingerprint,
        })
    }

    /// What decides an image's vision features under this pipeline (see
    /// [`fingerprint`]): image caches key their entries with it, so features
    /// from another model, weight format or aspect mode are never reused.
    pub fn feature_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The model.
    pub fn model(&self) -> &VisionLanguageModel {
        &self.model
    }

    /// Which family member is loaded.
    pub fn family(&self) -> Family {
        self.model.family()
    }

    /// The chat prompt for `question` about `num_images` images, with this
    /// family's image markers (`<image>\n` for r-v1, `<image> ` for v1.5).
    pub fn chat_prompt(&self, question: &str, system: Option<&str>, num_images: usize) -> String {
        crate::prompt::chat_prompt(
            question,
            system,
            self.family().chat_image_marker(),
            num_images,
        )
    }

    /// [`Self::chat_prompt`] with the question (and a given system text)
    /// marked as plain text, for [`serving::Engine`](crate::serving::Engine) requests.
    pub fn marked_chat_prompt(
        &self,
        question: &str,
        system: Option<&str>,
        num_images: usize,
    ) -> blip3_tokenizer::MarkedText {
        crate::prompt::marked_chat_prompt(
            question,
            system,
            self.family().chat_image_marker(),
            num_images,
        )
    }

    /// Whether the perceiver hides the anyres padding.
    pub fn masks_padding(&self) -> bool {
        self.padding_mask
    }

    /// How `<image>` tokens are spliced.
    pub fn splice_mode(&self) -> SpliceMode {
        self.splice
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

    /// Runs the full pipeline on `prompt` (already templated, with one
    /// `<image>` per image in order) and greedily generates up to
    /// `max_new_tokens` ids. `on_token` sees each id as it is produced. With
    /// `capture`, stage tensors are kept.
    pub fn run(
        &self,
        images: &[RgbImage],
        prompt: &str,
        max_new_tokens: usize,
        capture: bool,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<RunOutput, EngineError> {
        self.generate(
            images,
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
        images: &[RgbImage],
        prompt: &str,
        params: &GenerationParams,
        capture: bool,
        on_choice: &mut dyn FnMut(&Choice),
    ) -> Result<RunOutput, EngineError> {
        // Template text: every added token in `prompt` is recognised, as
        // `Tokenizer::encode` does.
        self.generate_with(
            images,
            &MarkedText::of(TextKind::Template, prompt),
            params,
            capture,
            &mut |choice: &Choice| {
                on_choice(choice);
                ControlFlow::Continue(())
            },
        )
    }

    /// [`generate`](Self::generate) for a prompt whose parts say which added
    /// tokens they may hold ([`MarkedText`]: a user's message stays plain
    /// text), with a callback that can stop the run. The cancellation hook:
    /// when `on_choice` returns [`ControlFlow::Break`], nothing more is
    /// computed and the call returns [`EngineError::Cancelled`] (an
    /// interrupted or abandoned caller, such as the Python binding on
    /// Ctrl-C). The callback runs between decode steps, so a run stops
    /// within one token.
    pub fn generate_with(
        &self,
        images: &[RgbImage],
        prompt: &MarkedText,
        params: &GenerationParams,
        capture: bool,
        on_choice: &mut dyn FnMut(&Choice) -> ControlFlow<()>,
    ) -> Result<RunOutput, EngineError> {
        let start = Instant::now();
        let device = self.model.device();
        let input_ids = self.tokenizer.encode_marked(prompt, true);
        self.check_image_count(&input_ids, images.len())?;
        let prepared: Vec<PreprocessedImage> = images.iter().map(|i| self.preprocess(i)).collect();
        let mut timings = StageTimings {
            preprocess_s: start.elapsed().as_secs_f64(),
            ..Default::default()
        };

        let t = Instant::now();
        let mut encoded = Vec::with_capacity(prepared.len());
        let (mut pixel_values, mut vit_tokens) = (Vec::new(), Vec::new());
        for image in &prepared {
            let (e, pixels, vit) = self.encode_image_stages(image)?;
            encoded.push(e);
            if capture {
                pixel_values.push(pixels);
                vit_tokens.push(vit);
            }
        }
        timings.vision_encode_s = t.elapsed().as_secs_f64();

        // Perceiver, then the splice (a copy, negligible, timed with it).
        let t = Instant::now();
        let spliced = self.prompt_embeds_stages(&input_ids, &encoded)?;
        timings.resampler_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut seq = self.start(&spliced.embeds, &input_ids, params)?;
        let last_logits = Tensor::from_slice(seq.logits(), seq.logits().len(), device)?;
        timings.prefill_s = t.elapsed().as_secs_f64();
        timings.prefill_tokens = seq.prompt_positions;

        let t = Instant::now();
        while seq.finished.is_none() {
            let choice = self.choose(&mut seq)?;
            if seq.generated.len() == 1 {
                timings.ttft_s = start.elapsed().as_secs_f64();
            }
            if on_choice(&choice).is_break() {
                return Err(EngineError::Cancelled);
            }
            self.step(&mut [&mut seq])?;
        }
        timings.decode_s = t.elapsed().as_secs_f64();
        timings.generated_tokens = seq.generated.len();

        let image_token_counts = spliced.counts.clone();
        let stages = if capture {
            let cat = |parts: Vec<Tensor>| -> Result<Tensor, EngineError> {
                if parts.is_empty() {
                    return Ok(Tensor::zeros(0, candle_core::DType::F32, device)?);
                }
                Ok(Tensor::cat(&parts, 0)?)
            };
            let vision_features = cat(encoded.iter().map(|e| e.features.clone()).collect())?;
            // The mask has one entry per perceiver input token: [ΣN, g²].
            let vision_attn_mask = match &spliced.mask {
                Some(m) => Some(Tensor::from_slice(
                    m,
                    vision_features.dims()[..2].to_vec(),
                    device,
                )?),
                None => None,
            };
            Some(StageTensors {
                pixel_values: cat(pixel_values)?,
                vit_tokens: cat(vit_tokens)?,
                vision_features,
                vision_attn_mask,
                text_embeds: spliced.text_embeds,
                vision_tokens: spliced.vision_tokens,
                image_token_counts: spliced.counts,
                inputs_embeds: spliced.embeds,
                last_logits,
            })
        } else {
            None
        };
        Ok(RunOutput {
            text: self.tokenizer.decode_answer(&seq.generated),
            input_ids,
            stop_reason: seq.finished.unwrap_or(StopReason::MaxNewTokens),
            generated_ids: seq.generated,
            timings,
            images: encoded.into_iter().map(|e| e.info).collect(),
            image_token_counts,
            stages,
        })
    }

    /// Checks that `num_images` images fit the `<image>` tokens of
    /// `input_ids` under this pipeline's splice mode, before any vision work.
    pub fn check_image_count(
        &self,
        input_ids: &[u32],
        num_images: usize,
    ) -> Result<(), EngineError> {
        let markers = input_ids
            .iter()
            .filter(|&&id| id == self.image_token_id)
            .count();
        match self.splice {
            SpliceMode::EveryImage if markers != num_images => Err(EngineError::Request(format!(
                "the prompt has {markers} <image> token(s) but {num_images} image(s) were given; \
                 every <image> takes one image, in order"
            ))),
            SpliceMode::FirstOnly if num_images > 1 => Err(EngineError::Request(format!(
                "first-image-only splicing takes one image, {num_images} were given"
            ))),
            _ => Ok(()),
        }
    }

    /// The stop rule of a chat prompt (`<|end|>` and the generation config's eos).
    pub fn stop_rule(&self) -> &StopRule {
        &self.stop
    }

    /// The stop rule of a raw completion prompt (base models): `<|endoftext|>`,
    /// `<|endofchunk|>` and the generation config's eos other than `<|end|>`.
    pub fn completion_stop_rule(&self) -> &StopRule {
        &self.completion_stop
    }

    /// The `<image>` token id.
    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
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
