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

use crate::generation::{StopReason, StopRule};
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
    /// The prompt is a raw completion (base models, few-shot): stop on
    /// `<|endoftext|>` / `<|endofchunk|>` instead of the chat's `<|end|>`.
    pub completion: bool,
    /// Generate exactly `max_new_tokens`, past any stop id (benchmarks and
    /// load tests that need fixed lengths; vLLM's `ignore_eos`).
    pub ignore_eos: bool,
}

impl GenerationParams {
    /// Greedy decoding of up to `max_new_tokens` ids (the reference's setting).
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: SamplingParams::default(),
            top_logprobs: 0,
            completion: false,
            ignore_eos: false,
        }
    }
}

/// The tower output of one image, regrouped for the perceiver, with its
/// padding mask: what does not depend on the prompt, hence what an image
/// cache keeps.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    /// `[N, g², C]`.
    pub features: Tensor,
    /// The anyres padding mask `[N·g²]` (1 keep, 0 padded).
    pub padding_mask: Vec<f32>,
    /// How the image was cut.
    pub info: ImageInfo,
}

impl EncodedImage {
    /// Rebuilds an encoded image from stored features `[N, g², C]` (e.g. a
    /// disk cache); the padding mask follows from the image's size and grid.
    pub fn from_features(features: Tensor, info: ImageInfo) -> Result<Self, EngineError> {
        let (n, v, _) = features.dims3()?;
        let g = (v as f64).sqrt().round() as usize;
        let (npw, nph) = info.grid;
        let cut_fits = n == 1 || n == 1 + npw * nph;
        if g * g != v || n != info.num_crops || !cut_fits {
            return Err(EngineError::Request(format!(
                "features of shape {:?} do not fit {} crops of a square token grid",
                features.dims(),
                info.num_crops
            )));
        }
        let padding_mask = blip3_model::anyres::padding_mask(info.image_size, info.grid, n, g);
        Ok(Self {
            features,
            padding_mask,
            info,
        })
    }

    /// Bytes held by the features and the mask.
    pub fn size_bytes(&self) -> usize {
        self.features.elem_count() * self.features.dtype().size_in_bytes()
            + self.padding_mask.len() * 4
    }
}

/// The language model's input and what produced it (parity dumps).
pub(crate) struct Spliced {
    /// `[L, D]`.
    pub embeds: Tensor,
    /// Perceiver text-query input (r-v1 instruct).
    pub text_embeds: Option<Tensor>,
    /// Perceiver output `[ΣN·Q, D]`.
    pub vision_tokens: Tensor,
    /// Rows per image.
    pub counts: Vec<usize>,
    /// The mask the perceiver applied `[ΣN·g²]`, if it masked.
    pub mask: Option<Vec<f32>>,
}

/// A prompt being prefilled chunk by chunk ([`Pipeline::begin_prefill`]).
pub struct Prefill {
    embeds: Tensor,
    input_ids: Vec<u32>,
    params: GenerationParams,
    cache: KvCache,
    /// Positions already in the cache.
    done: usize,
    /// The last prefilled position's hidden state.
    last_hidden: Option<Tensor>,
}

/// One sequence being generated: its KV cache, the logits for its next token
/// and what it has produced so far.
pub struct Sequence {
    cache: KvCache,
    stop: StopRule,
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
    /// Runs the vision tower on a preprocessed image and regroups its tokens.
    pub fn encode_image(&self, prepared: &PreprocessedImage) -> Result<EncodedImage, EngineError> {
        Ok(self.encode_image_stages(prepared)?.0)
    }

    /// [`encode_image`](Self::encode_image) that also returns the pixel
    /// tensor `[N, 3, S, S]` and the tower tokens before regrouping (parity dumps).
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
        let crops = self
            .model()
            .encode_crops(&pixel_values, prepared.grid, prepared.image_size)?;
        let encoded = EncodedImage {
            features: crops.features,
            padding_mask: crops.padding_mask,
            info: ImageInfo::of(prepared),
        };
        Ok((encoded, pixel_values, crops.vit_tokens))
    }

    /// The vision tower on crop `crop` of a preprocessed image alone:
    /// `[1, g², C]`. [`Self::finish_image`] on every crop's tokens, in
    /// order, gives what [`Self::encode_image`] gives (crops do not mix in
    /// the tower), so a scheduler can run other work between crops.
    pub fn encode_crop(
        &self,
        prepared: &PreprocessedImage,
        crop: usize,
    ) -> Result<Tensor, EngineError> {
        let s = prepared.crop_size;
        let per_crop = 3 * s * s;
        let pixels = prepared
            .pixel_values
            .get(crop * per_crop..(crop + 1) * per_crop)
            .ok_or_else(|| {
                EngineError::Request(format!(
                    "crop {crop} of an image with {} crops",
                    prepared.num_crops
                ))
            })?;
        let pixel_values = Tensor::from_slice(pixels, (1, 3, s, s), self.model().device())?;
        Ok(self.model().vision_tokens(&pixel_values)?)
    }

    /// Regroups the tower tokens of every crop of `prepared` (from
    /// [`Self::encode_crop`], in crop order) into the encoded image.
    pub fn finish_image(
        &self,
        prepared: &PreprocessedImage,
        crops: &[Tensor],
    ) -> Result<EncodedImage, EngineError> {
        if crops.len() != prepared.num_crops {
            return Err(EngineError::Request(format!(
                "{} crop encodings for an image with {} crops",
                crops.len(),
                prepared.num_crops
            )));
        }
        let parts: Vec<&Tensor> = crops.iter().collect();
        let vit_tokens = Tensor::cat(&parts, 0)?;
        let features =
            self.model()
                .regroup_crops(vit_tokens, prepared.grid, prepared.image_size)?;
        Ok(EncodedImage {
            features: features.features,
            padding_mask: features.padding_mask,
            info: ImageInfo::of(prepared),
        })
    }

    /// Perceiver (conditioned on `input_ids` for r-v1 instruct) and splice:
    /// the language model's input `[L, D]`. `images` are in `<image>` order;
    /// their count must fit the prompt's `<image>` tokens.
    pub fn prompt_embeds(
        &self,
        input_ids: &[u32],
        images: &[EncodedImage],
    ) -> Result<Tensor, EngineError> {
        Ok(self.prompt_embeds_stages(input_ids, images)?.embeds)
    }

    /// The perceiver output spliced at each `<image>` of `input_ids`: one
    /// `[N_k·Q, D]` tensor per image, in order (what a dump's
    /// `vision_tokens` holds, image by image). r-v1 instruct conditions the
    /// perceiver on the prompt, so the rows depend on `input_ids` there.
    pub fn image_tokens(
        &self,
        input_ids: &[u32],
        images: &[EncodedImage],
    ) -> Result<Vec<Tensor>, EngineError> {
        let spliced = self.prompt_embeds_stages(input_ids, images)?;
        let mut out = Vec::with_capacity(spliced.counts.len());
        let mut row = 0;
        for &rows in &spliced.counts {
            out.push(spliced.vision_tokens.narrow(0, row, rows)?);
            row += rows;
        }
        Ok(out)
    }

    /// [`prompt_embeds`](Self::prompt_embeds) keeping the intermediate
    /// tensors. All images' crops go through the perceiver as one batch.
    pub(crate) fn prompt_embeds_stages(
        &self,
        input_ids: &[u32],
        images: &[EncodedImage],
    ) -> Result<Spliced, EngineError> {
        // The image count is checked by the splice, against the splice mode.
        let model = self.model();
        let d = model.config().text_config.hidden_size;
        if images.is_empty() {
            return Ok(Spliced {
                embeds: model.lm().embed(input_ids)?,
                text_embeds: None,
                vision_tokens: Tensor::zeros((0, d), candle_core::DType::F32, model.device())?,
                counts: Vec::new(),
                mask: None,
            });
        }
        let text_embeds = model.text_queries(input_ids)?;
        let parts: Vec<&Tensor> = images.iter().map(|i| &i.features).collect();
        let features = Tensor::cat(&parts, 0)?;
        let mask: Option<Vec<f32>> = self.masks_padding().then(|| {
            images
                .iter()
                .flat_map(|i| i.padding_mask.iter().copied())
                .collect()
        });
        let resampled =
            model
                .resampler()
                .forward(&features, mask.as_deref(), text_embeds.as_ref())?;
        let (n, q, d) = resampled.dims3()?;
        let vision_tokens = resampled.reshape((n * q, d))?;
        let mut blocks = Vec::with_capacity(images.len());
        let mut counts = Vec::with_capacity(images.len());
        let mut row = 0;
        for image in images {
            let rows = image.features.dim(0)? * q;
            blocks.push(vision_tokens.narrow(0, row, rows)?);
            counts.push(rows);
            row += rows;
        }
        let embeds = model.splice(
            input_ids,
            &blocks,
            self.image_token_id(),
            self.splice_mode(),
        )?;
        Ok(Spliced {
            embeds,
            text_embeds,
            vision_tokens,
            counts,
            mask,
        })
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
        let mut prefill = self.begin_prefill(inputs_embeds, input_ids, params)?;
        while !self.prefill_chunk(&mut prefill, usize::MAX)? {}
        self.finish_prefill(prefill)
    }

    /// Checks a prompt and sets up its prefill, to run in chunks
    /// ([`Self::prefill_chunk`]) between other work, then
    /// [`Self::finish_prefill`]; together the same as [`Self::start`].
    pub fn begin_prefill(
        &self,
        inputs_embeds: &Tensor,
        input_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<Prefill, EngineError> {
        params.sampling.validate().map_err(EngineError::Request)?;
        let lm = self.model().lm();
        let len = inputs_embeds.dim(0)?;
        let context = lm.config().max_position_embeddings;
        if len == 0 || len >= context {
            return Err(EngineError::Request(format!(
                "prompt of {len} positions (text + visual tokens) does not fit the {context}-token context"
            )));
        }
        Ok(Prefill {
            embeds: inputs_embeds.clone(),
            input_ids: input_ids.to_vec(),
            params: params.clone(),
            cache: lm.new_cache(),
            done: 0,
            last_hidden: None,
        })
    }

    /// Prefills up to `max_positions` more prompt positions; `true` once the
    /// whole prompt is in the cache.
    pub fn prefill_chunk(
        &self,
        prefill: &mut Prefill,
        max_positions: usize,
    ) -> Result<bool, EngineError> {
        let len = prefill.embeds.dim(0)?;
        if prefill.done < len {
            let take = max_positions.max(1).min(len - prefill.done);
            let chunk = prefill.embeds.narrow(0, prefill.done, take)?;
            let hidden = self.model().lm().forward(&chunk, &mut prefill.cache)?;
            prefill.last_hidden = Some(hidden.narrow(0, take - 1, 1)?);
            prefill.done += take;
        }
        Ok(prefill.done == len)
    }

    /// The sequence of a fully prefilled prompt, its first token ready to
    /// [`choose`](Self::choose).
    pub fn finish_prefill(&self, prefill: Prefill) -> Result<Sequence, EngineError> {
        let lm = self.model().lm();
        let len = prefill.embeds.dim(0)?;
        let last = match (&prefill.last_hidden, prefill.done == len) {
            (Some(last), true) => last,
            _ => {
                return Err(EngineError::Request(
                    "finish_prefill before the whole prompt was prefilled".into(),
                ))
            }
        };
        let logits = lm.logits(last)?;
        let context = lm.config().max_position_embeddings;
        let params = prefill.params;
        Ok(Sequence {
            cache: prefill.cache,
            stop: if params.ignore_eos {
                StopRule {
                    end_id: None,
                    eos_ids: Vec::new(),
                }
            } else if params.completion {
                self.completion_stop_rule().clone()
            } else {
                self.stop_rule().clone()
            },
            logits: logits.flatten_all()?.to_vec1()?,
            sampler: Sampler::new(params.sampling.clone()),
            history: prefill.input_ids,
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
        if let Some(reason) = seq.stop.check(choice.id) {
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
