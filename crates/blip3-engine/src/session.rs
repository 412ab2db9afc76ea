//! Generation split into steps, for callers that interleave sequences (the
//! server's continuous batching) or sample beyond greedy.
//!
//! ```text
//! encode_image ─▶ prompt_embeds ─▶ start (prefill) ─▶ choose ─▶ step ─▶ choose ─▶ …
//!   (ViT, cacheable)   (perceiver, splice)                 (batched over sequences)
//! ```

use blip3_model::phi3::KvCache;
use blip3_preprocess::PreprocessedImage;
use candle_core::Tensor;

use crate::generation::StopReason;
use crate::pipeline::{ImageInfo, Pipeline};
use crate::sampling::{Choice, Sampler, SamplingParams};
use crate::EngineError;

/// Per-sequence generation settings.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    /// Most ids generated (the stop id included).
    pub max_new_tokens: usize,
    /// Token selection.
    pub sampling: SamplingParams,
    /// Alternatives reported with each token (0 = none).
    pub top_logprobs: usize,
}

impl GenerationParams {
    /// Greedy decoding of up to `max_new_tokens` ids (the reference's setting).
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: SamplingParams::default(),
            top_logprobs: 0,
        }
    }
}

/// The ViT output of one image, regrouped for the perceiver: what does not
/// depend on the prompt, hence what an image cache keeps.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    /// `[N, g², W]`.
    pub features: Tensor,
    /// How the image was cut.
    pub info: ImageInfo,
}

impl EncodedImage {
    /// Bytes held by the features.
    pub fn size_bytes(&self) -> usize {
        self.features.elem_count() * self.features.dtype().size_in_bytes()
    }
}

/// One sequence being generated: its KV cache, the logits for its next token
/// and what it has produced so far.
pub struct Sequence {
    cache: KvCache,
    logits: Vec<f32>,
    sampler: Sampler,
    history: Vec<u32>,
    max_new_tokens: usize,
    top_logprobs: usize,
    pending: Option<u32>,
    /// Prompt positions after splicing.
    pub prompt_positions: usize,
    /// Generated ids, the stop id included.
    pub generated: Vec<u32>,
    /// Why generation ended, once it has.
    pub finished: Option<StopReason>,
}

impl Sequence {
    /// True while the sequence has a token waiting to be fed by [`Pipeline::step`].
    pub fn needs_step(&self) -> bool {
        self.pending.is_some() && self.finished.is_none()
    }

    /// Logits for the next token (`initial_tokenizer_len + 3` values).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Positions held in the KV cache.
    pub fn positions(&self) -> usize {
        self.cache.len()
    }
}

impl Pipeline {
    /// Runs the ViT on a preprocessed image and regroups its tokens.
    pub fn encode_image(&self, prepared: &PreprocessedImage) -> Result<EncodedImage, EngineError> {
        Ok(self.encode_image_stages(prepared)?.0)
    }

    /// [`encode_image`](Self::encode_image) that also returns the pixel
    /// tensor `[N, 3, S, S]` and the ViT tokens before regrouping (parity dumps).
    pub(crate) fn encode_image_stages(
        &self,
        prepared: &PreprocessedImage,
    ) -> Result<(EncodedImage, Tensor, Tensor), EngineError> {
        let s = prepared.crop_size;
        let pixel_values = Tensor::from_slice(
            &prepared.pixel_values,
            (prepared.num_crops, 3, s, s),
            self.model().device(),
        )?;
        self.model().check_pixels(&pixel_values)?;
        let vit_tokens = self.model().vision().forward(&pixel_values)?;
        let g = self.model().vision().config().grid();
        let features = blip3_model::anyres::regroup_features(&vit_tokens, prepared.grid, g)?;
        let encoded = EncodedImage {
            features,
            info: ImageInfo::of(prepared),
        };
        Ok((encoded, pixel_values, vit_tokens))
    }

    /// Perceiver (conditioned on `input_ids`) and splice: the language model's
    /// input `[L, D]`. Without an image the prompt must not hold `<image>`.
    pub fn prompt_embeds(
        &self,
        input_ids: &[u32],
        image: Option<&EncodedImage>,
    ) -> Result<Tensor, EngineError> {
        match image {
            Some(image) => Ok(self.prompt_embeds_stages(input_ids, image)?.0),
            None => {
                if input_ids.contains(&self.image_token_id()) {
                    return Err(EngineError::Request(
                        "the prompt has an <image> token but no image was given".into(),
                    ));
                }
                Ok(self.model().lm().embed(input_ids)?)
            }
        }
    }

    /// [`prompt_embeds`](Self::prompt_embeds) with an image, also returning the
    /// perceiver's text-query input and its output tokens `[N·Q, D]` (parity
    /// dumps).
    pub(crate) fn prompt_embeds_stages(
        &self,
        input_ids: &[u32],
        image: &EncodedImage,
    ) -> Result<(Tensor, Option<Tensor>, Tensor), EngineError> {
        let text_embeds = self.model().text_queries(input_ids)?;
        let resampled = self
            .model()
            .resampler()
            .forward(&image.features, text_embeds.as_ref())?;
        let (n, q, d) = resampled.dims3()?;
        let vision_tokens = resampled.reshape((n * q, d))?;
        let embeds = self
            .model()
            .splice(input_ids, &vision_tokens, self.image_token_id())?;
        Ok((embeds, text_embeds, vision_tokens))
    }

    /// Prefills `inputs_embeds` `[L, D]` and returns a sequence whose next
    /// token is ready to [`choose`](Self::choose). `input_ids` feed the
    /// repetition penalty. `max_new_tokens` is capped by the context.
    pub fn start(
        &self,
        inputs_embeds: &Tensor,
        input_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<Sequence, EngineError> {
        params.sampling.validate().map_err(EngineError::Request)?;
        let lm = self.model().lm();
        let len = inputs_embeds.dim(0)?;
        let context = lm.config().max_position_embeddings;
        if len == 0 || len >= context {
            return Err(EngineError::Request(format!(
                "prompt of {len} positions (text + visual tokens) does not fit the {context}-token context"
            )));
        }
        let mut cache = lm.new_cache();
        let hidden = lm.forward(inputs_embeds, &mut cache)?;
        let logits = lm.logits(&hidden.narrow(0, len - 1, 1)?)?;
        Ok(Sequence {
            cache,
            logits: logits.flatten_all()?.to_vec1()?,
            sampler: Sampler::new(params.sampling.clone()),
            history: input_ids.to_vec(),
            max_new_tokens: params.max_new_tokens.min(context - len),
            top_logprobs: params.top_logprobs,
            pending: None,
            prompt_positions: len,
            generated: Vec::new(),
            finished: if params.max_new_tokens == 0 {
                Some(StopReason::MaxNewTokens)
            } else {
                None
            },
        })
    }

    /// Chooses the sequence's next token from its current logits and records
    /// it; sets `finished` on a stop id or when `max_new_tokens` is reached,
    /// otherwise leaves the token for the next [`step`](Self::step).
    pub fn choose(&self, seq: &mut Sequence) -> Result<Choice, EngineError> {
        if seq.finished.is_some() || seq.pending.is_some() {
            return Err(EngineError::Request(
                "choose called on a finished sequence or before its step".into(),
            ));
        }
        let choice = seq
            .sampler
            .sample(&seq.logits, &seq.history, seq.top_logprobs);
        seq.generated.push(choice.id);
        seq.history.push(choice.id);
        if let Some(reason) = self.stop_rule().check(choice.id) {
            seq.finished = Some(reason);
        } else if seq.generated.len() >= seq.max_new_tokens {
            seq.finished = Some(StopReason::MaxNewTokens);
        } else {
            seq.pending = Some(choice.id);
        }
        Ok(choice)
    }

    /// Feeds every waiting sequence its last chosen token in one batched
    /// decoder pass (weights streamed once for the whole batch) and refreshes
    /// their logits. Sequences without a waiting token are skipped.
    pub fn step(&self, seqs: &mut [&mut Sequence]) -> Result<(), EngineError> {
        let lm = self.model().lm();
        let mut ready: Vec<&mut Sequence> = seqs
            .iter_mut()
            .filter(|s| s.needs_step())
            .map(|s| &mut **s)
            .collect();
        // On a worker of the pool: the step's ~160 parallel regions then
        // share work directly instead of each waking the pool from outside.
        blip3_kernels::pool::on_pool(|| {
            for chunk in ready.chunks_mut(blip3_kernels::gemv::MAX_ROWS) {
                let ids: Vec<u32> = chunk.iter().filter_map(|s| s.pending).collect();
                let embeds = lm.embed(&ids)?;
                let mut caches: Vec<&mut KvCache> =
                    chunk.iter_mut().map(|s| &mut s.cache).collect();
                let hidden = lm.forward_batch(&embeds, &mut caches)?;
                let logits = lm.logits(&hidden)?;
                for (i, seq) in chunk.iter_mut().enumerate() {
                    seq.logits = logits.get(i)?.to_vec1()?;
                    seq.pending = None;
                }
            }
            Ok(())
        })
    }
}
