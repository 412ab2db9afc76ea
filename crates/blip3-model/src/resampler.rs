//! The perceiver resampler ("vision tokenizer"), spec §6.
//!
//! Instruct r-v1 uses `InstructPerceiverResampler`: the first ≤ 256 prompt-token
//! embeddings are projected (`text_projection`) and appended to the learned
//! latents as extra queries; the anyres mask is not applied. Checkpoints without
//! `text_projection` (the base model) run the plain resampler.

use blip3_kernels::attention::{AttentionShape, Strided, Visibility};
use candle_core::Tensor;

use crate::checkpoint::{Init, TensorSpec, NORM, WEIGHT};
use crate::config::VisionTokenizerConfig;
use crate::nn::{gelu_erf, LayerNorm, Linear};
use crate::weights::WeightStore;
use crate::Result;

const LN_EPS: f32 = 1e-5;

/// Number of prompt tokens that condition the perceiver.
pub const MAX_TEXT_QUERIES: usize = 256;

struct Layer {
    norm_media: LayerNorm,
    norm_latents: LayerNorm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    ff_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl Layer {
    fn load(store: &WeightStore, prefix: &str, cfg: &VisionTokenizerConfig) -> Result<Self> {
        let (dim, inner) = (cfg.vis_feature_dim, cfg.heads * cfg.dim_head);
        let ff = dim * cfg.ff_mult;
        Ok(Self {
            norm_media: LayerNorm::load(store, &format!("{prefix}.0.norm_media"), dim, LN_EPS)?,
            norm_latents: LayerNorm::load(store, &format!("{prefix}.0.norm_latents"), dim, LN_EPS)?,
            to_q: Linear::load(store, &format!("{prefix}.0.to_q"), dim, inner, false)?,
            to_kv: Linear::load(store, &format!("{prefix}.0.to_kv"), dim, 2 * inner, false)?,
            to_out: Linear::load(store, &format!("{prefix}.0.to_out"), inner, dim, false)?,
            ff_norm: LayerNorm::load(store, &format!("{prefix}.1.0"), dim, LN_EPS)?,
            ff_in: Linear::load(store, &format!("{prefix}.1.1"), dim, ff, false)?,
            ff_out: Linear::load(store, &format!("{prefix}.1.3"), ff, dim, false)?,
        })
    }

    /// One attention + feed-forward step on queries `q` [B, Lq, C] over media
    /// `x` [B, V, C]; `key_mask` [B, V + Lq] hides keys (padded media).
    fn forward(
        &self,
        x: &Tensor,
        q: &Tensor,
        heads: usize,
        dim_head: usize,
        key_mask: Option<&[bool]>,
    ) -> Result<Tensor> {
        let (b, lq, _) = q.dims3()?;
        let xn = self.norm_media.forward(x)?;
        let qn = self.norm_latents.forward(q)?;
        let query = self.to_q.forward(&qn)?;
        let kv_in = Tensor::cat(&[&xn, &qn], 1)?;
        let kv = self.to_kv.forward(&kv_in)?;
        let inner = heads * dim_head;
        let lk = kv_in.dim(1)?;
        // Query [B, Lq, inner] and kv [B, Lk, 2·inner] = (k | v), heads
        // side by side in each row: read in place by the blocked attention
        // kernel (no [B, H, Lq, Lk] score matrix), which writes [B, Lq,
        // inner] with the heads merged. Max-subtraction before softmax in the
        // reference is numerically neutral.
        let query: Vec<f32> = query.flatten_all()?.to_vec1()?;
        let kv: Vec<f32> = kv.flatten_all()?.to_vec1()?;
        let media = |offset: usize| Strided {
            data: &kv,
            offset,
            batch: lk * 2 * inner,
            head: dim_head,
            token: 2 * inner,
        };
        let queries = Strided {
            data: &query,
            offset: 0,
            batch: lq * inner,
            head: dim_head,
            token: inner,
        };
        let shape = AttentionShape {
            batch: b,
            heads,
            kv_heads: heads,
            queries: lq,
            keys: lk,
            head_dim: dim_head,
        };
        let mut out = vec![0f32; b * lq * inner];
        blip3_kernels::attention::attention_with(
            self.to_q.attention_products(),
            shape,
            queries,
            media(0),
            media(inner),
            (dim_head as f32).powf(-0.5),
            key_mask.map_or(Visibility::All, Visibility::KeyMask),
            &mut out,
        );
        let out = Tensor::from_vec(out, (b, lq, inner), q.device())?;
        let q = self.to_out.forward_residual(&out, q)?;
        let inner = gelu_erf(&self.ff_in.forward(&self.ff_norm.forward(&q)?)?)?;
        self.ff_out.forward_residual(&inner, &q)
    }
}

/// Text-conditioning projection: Linear(D→C), exact GELU, Linear(C→C).
struct TextProjection {
    first: Linear,
    second: Linear,
}

/// The perceiver resampler with its output projection to the LM width.
pub struct PerceiverResampler {
    cfg: VisionTokenizerConfig,
    latents: Tensor,
    text_projection: Option<TextProjection>,
    layers: Vec<Layer>,
    norm: LayerNorm,
    projection: Linear,
}

impl PerceiverResampler {
    /// Loads from keys under `prefix` (`vlm.vision_tokenizer`). `text_projection`
    /// is loaded when present (instruct) and skipped when absent (base).
    pub fn load(store: &WeightStore, prefix: &str, cfg: &VisionTokenizerConfig) -> Result<Self> {
        let (dim, lm) = (cfg.vis_feature_dim, cfg.lang_embedding_dim);
        let text_projection = if store
            .contains_weight(&format!("{prefix}.text_projection.0.weight"))
        {
            Some(TextProjection {
                first: Linear::load(store, &format!("{prefix}.text_projection.0"), lm, dim, true)?,
                second: Linear::load(
                    store,
                    &format!("{prefix}.text_projection.2"),
                    dim,
                    dim,
                    true,
                )?,
            })
        } else {
            tracing::info!("no {prefix}.text_projection: running the plain (base) perceiver");
            None
        };
        let layers = (0..cfg.depth)
            .map(|l| Layer::load(store, &format!("{prefix}.layers.{l}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            latents: store.f32(&format!("{prefix}.latents"), &[cfg.num_vis_tokens, dim])?,
            text_projection,
            layers,
            norm: LayerNorm::load(store, &format!("{prefix}.norm"), dim, LN_EPS)?,
            projection: Linear::load(store, &format!("{prefix}.projection"), dim, lm, true)?,
        })
    }

    /// Whether the perceiver takes text queries (instruct).
    pub fn is_text_conditioned(&self) -> bool {
        self.text_projection.is_some()
    }

    /// Learned latents per crop.
    pub fn num_latents(&self) -> usize {
        self.cfg.num_vis_tokens
    }

    /// `features` [N, V, C] (one row per crop group) and the prompt embeddings
    /// `text_embeds` [L', D] (first ≤ 256 ids) → visual tokens [N, Q, D].
    ///
    /// `media_mask` [N·V] (1 keep, exactly 0 hide) is the anyres padding mask:
    /// hidden media keys get a −∞ logit in every layer; the latents (and text
    /// queries) stay visible, so no row is ever fully masked.
    pub fn forward(
        &self,
        features: &Tensor,
        media_mask: Option<&[f32]>,
        text_embeds: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (n, v, c) = features.dims3()?;
        let q0 = self
            .latents
            .unsqueeze(0)?
            .broadcast_as((n, self.cfg.num_vis_tokens, c))?;
        let mut q = match (&self.text_projection, text_embeds) {
            (Some(tp), Some(text)) => {
                let e = tp.second.forward(&gelu_erf(&tp.first.forward(text)?)?)?;
                let l = e.dim(0)?;
                let e = e.unsqueeze(0)?.broadcast_as((n, l, c))?;
                Tensor::cat(&[&q0, &e], 1)?
            }
            _ => q0.contiguous()?,
        };
        let key_mask = match media_mask {
            Some(mask) if mask.len() != n * v => {
                return Err(crate::ModelError::Input(format!(
                    "perceiver mask has {} entries for {n} crops of {v} tokens",
                    mask.len()
                )))
            }
            // All ones hides nothing: skip the masked path.
            Some(mask) if mask.contains(&0.0) => {
                let lq = q.dim(1)?;
                let keys = v + lq;
                let mut keep = vec![true; n * keys];
                for (i, row) in mask.chunks_exact(v).enumerate() {
                    for (k, &m) in keep[i * keys..i * keys + v].iter_mut().zip(row) {
                        *k = m != 0.0;
                    }
                }
                Some(keep)
            }
            _ => None,
        };
        for layer in &self.layers {
            q = layer.forward(
                features,
                &q,
                self.cfg.heads,
                self.cfg.dim_head,
                key_mask.as_deref(),
            )?;
        }
        let q = q.narrow(1, 0, self.cfg.num_vis_tokens)?;
        self.projection.forward(&self.norm.forward(&q)?)
    }
}

/// The perceiver's checkpoint keys under `prefix` (`vlm.vision_tokenizer`),
/// `text_projection` only for the instruct r-v1 perceiver.
pub fn tensor_specs(
    prefix: &str,
    cfg: &VisionTokenizerConfig,
    text_projection: bool,
) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let (w, norm) = (WEIGHT, NORM);
    let r = cfg;
    let vt = prefix;
    let (c, d, inner) = (
        r.vis_feature_dim,
        r.lang_embedding_dim,
        r.heads * r.dim_head,
    );
    out.push(TensorSpec::new(
        format!("{vt}.latents"),
        &[r.num_vis_tokens, c],
        Init::Normal(1.0),
    ));
    out.push(TensorSpec::new(
        format!("{vt}.projection.weight"),
        &[d, c],
        w,
    ));
    out.push(TensorSpec::new(format!("{vt}.projection.bias"), &[d], w));
    if text_projection {
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.0.weight"),
            &[c, d],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.0.bias"),
            &[c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.2.weight"),
            &[c, c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.2.bias"),
            &[c],
            w,
        ));
    }
    for l in 0..r.depth {
        let a = format!("{vt}.layers.{l}.0");
        let f = format!("{vt}.layers.{l}.1");
        out.push(TensorSpec::new(
            format!("{a}.norm_media.weight"),
            &[c],
            norm,
        ));
        out.push(TensorSpec::new(format!("{a}.norm_media.bias"), &[c], w));
        out.push(TensorSpec::new(
            format!("{a}.norm_latents.weight"),
            &[c],
            norm,
        ));
        out.push(TensorSpec::new(format!("{a}.norm_latents.bias"), &[c], w));
        out.push(TensorSpec::new(format!("{a}.to_q.weight"), &[inner, c], w));
        out.push(TensorSpec::new(
            format!("{a}.to_kv.weight"),
            &[2 * inner, c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{a}.to_out.weight"),
            &[c, inner],
            w,
        ));
        out.push(TensorSpec::new(format!("{f}.0.weight"), &[c], norm));
        out.push(TensorSpec::new(format!("{f}.0.bias"), &[c], w));
        out.push(TensorSpec::new(
            format!("{f}.1.weight"),
            &[c * r.ff_mult, c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{f}.3.weight"),
            &[c, c * r.ff_mult],
            w,
        ));
    }
    out.push(TensorSpec::new(format!("{vt}.norm.weight"), &[c], norm));
    out.push(TensorSpec::new(format!("{vt}.norm.bias"), &[c], w));

    out
}
