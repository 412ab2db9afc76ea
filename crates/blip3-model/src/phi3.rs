//! Phi-3-mini decoder (HF `Phi3ForCausalLM`, transformers 4.41.2 eager path), spec §8.2.
//!
//! Fused `qkv_proj` and `gate_up_proj`, RMSNorm, full-width rotate-half RoPE,
//! causal attention with a sliding window of W = `sliding_window` (query i sees
//! keys i − W … i, the 2048-key window of transformers 4.41.2, §8.4), and a KV
//! cache so generation feeds one token per step.

use std::cell::RefCell;

use blip3_kernels::scratch::with_reused;
use candle_core::{Device, Tensor, D};

use crate::config::Phi3Config;
use crate::decoupled::{DecoupledEmbedding, DecoupledHead};
pub use crate::kv_cache::{KvCache, KvPrecision};
use blip3_kernels::attention::{AttentionShape, Strided, Visibility};

use crate::nn::{Linear, RmsNorm};
use crate::weights::WeightStore;
use crate::{ModelError, Result};

/// Rotary tables, computed in F32 as transformers does.
struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// The same tables on the host, [max_positions, head_dim / 2].
    cos_host: Vec<f32>,
    sin_host: Vec<f32>,
}

impl Rope {
    fn new(cfg: &Phi3Config, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let half = dim / 2;
        let base = cfg.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| 1.0f32 / base.powf((2 * j) as f32 / dim as f32))
            .collect();
        let max = cfg.max_position_embeddings;
        let mut cos = Vec::with_capacity(max * half);
        let mut sin = Vec::with_capacity(max * half);
        for pos in 0..max {
            for &f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Self {
            cos: Tensor::from_slice(&cos, (max, half), device)?,
            sin: Tensor::from_slice(&sin, (max, half), device)?,
            cos_host: cos,
            sin_host: sin,
        })
    }

    /// Rotates each `head_dim`-wide head of `x` in place for one position
    /// (the arithmetic of candle's `rope` kernel).
    fn apply_host(&self, x: &mut [f32], head_dim: usize, position: usize) {
        let half = head_dim / 2;
        let cos = &self.cos_host[position * half..][..half];
        let sin = &self.sin_host[position * half..][..half];
        for head in x.chunks_exact_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x1 * sin[i] + x2 * cos[i];
            }
        }
    }

    /// Applies RoPE to `x` [1, H, L, hd] at positions `start..start+L`.
    fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let len = x.dim(2)?;
        let cos = self.cos.narrow(0, start, len)?;
        let sin = self.sin.narrow(0, start, len)?;
        Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?)
    }
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    qkv_proj: Linear,
    o_proj: Linear,
    post_attention_layernorm: RmsNorm,
    gate_up_proj: Linear,
    down_proj: Linear,
}

/// Phi-3 with BLIP-3's decoupled embedding and head.
pub struct Phi3 {
    cfg: Phi3Config,
    embed: DecoupledEmbedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    head: DecoupledHead,
    rope: Rope,
    kv_precision: KvPrecision,
}

impl Phi3 {
    /// Loads from keys under `prefix` (`vlm.lang_model`).
    pub fn load(store: &WeightStore, prefix: &str, cfg: &Phi3Config) -> Result<Self> {
        let (d, v, il) = (cfg.hidden_size, cfg.vocab_size, cfg.initial_tokenizer_len);
        let eps = cfg.rms_norm_eps as f32;
        let qkv = (cfg.num_attention_heads + 2 * cfg.kv_heads()) * cfg.head_dim();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("{prefix}.model.layers.{i}");
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::load(store, &format!("{p}.input_layernorm"), d, eps)?,
                    qkv_proj: Linear::load(
                        store,
                        &format!("{p}.self_attn.qkv_proj"),
                        d,
                        qkv,
                        false,
                    )?,
                    o_proj: Linear::load(store, &format!("{p}.self_attn.o_proj"), d, d, false)?,
                    post_attention_layernorm: RmsNorm::load(
                        store,
                        &format!("{p}.post_attention_layernorm"),
                        d,
                        eps,
                    )?,
                    gate_up_proj: Linear::load(
                        store,
                        &format!("{p}.mlp.gate_up_proj"),
                        d,
                        2 * cfg.intermediate_size,
                        false,
                    )?,
                    down_proj: Linear::load(
                        store,
                        &format!("{p}.mlp.down_proj"),
                        cfg.intermediate_size,
                        d,
                        false,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut lm = Self {
            cfg: cfg.clone(),
            embed: DecoupledEmbedding::load(
                store,
                &format!("{prefix}.model.embed_tokens"),
                v,
                d,
                il,
            )?,
            layers,
            norm: RmsNorm::load(store, &format!("{prefix}.model.norm"), d, eps)?,
            head: DecoupledHead::load(store, &format!("{prefix}.lm_head"), v, d, il)?,
            rope: Rope::new(cfg, store.device())?,
            kv_precision: KvPrecision::F32,
        };
        // Exact cache for F32 weights (parity), half-size cache otherwise.
        if lm.weight_dtype() != "f32" {
            lm.kv_precision = KvPrecision::F16;
        }
        Ok(lm)
    }

    /// Element type of the caches `new_cache` creates (F32 with F32 weights,
    /// F16 otherwise, unless set here).
    pub fn set_kv_precision(&mut self, precision: KvPrecision) {
        self.kv_precision = precision;
    }

    /// Element type of new caches.
    pub fn kv_precision(&self) -> KvPrecision {
        self.kv_precision
    }

    /// The text configuration.
    pub fn config(&self) -> &Phi3Config {
        &self.cfg
    }

    /// In-memory format of the decoder's matrix weights (`f32`, `bf16`, `q8_0`).
    pub fn weight_dtype(&self) -> String {
        self.layers
            .first()
            .map_or_else(|| "none".into(), |l| l.qkv_proj.weight_format())
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.kv_precision,
            self.layers.len(),
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
            self.cfg.max_position_embeddings,
        )
    }

    /// Token ids → embeddings [len, d] through the decoupled embedding.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    /// Runs `embeds` [L, d] at positions `cache.len()..` and returns the final
    /// hidden states [L, d] (after the last RMSNorm).
    pub fn forward(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (len, _) = embeds.dims2()?;
        let start = cache.len();
        if start + len > self.cfg.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens exceeds the context of {} tokens",
                start + len,
                self.cfg.max_position_embeddings
            )));
        }
        if len == 1 {
            return self.decode_rows(embeds, &mut [cache]);
        }
        cache.reserve(start + len);
        let mut x = embeds.clone();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let qkv = layer.qkv_proj.forward(&h)?;
            let out = self.attend(&qkv, cache, li)?;
            x = self.mlp_block(layer, &layer.o_proj.forward_residual(&out, &x)?)?;
        }
        cache.advance(len);
        self.norm.forward(&x)
    }

    /// One decode step for several independent sequences: row `b` of `embeds`
    /// [B, d] is the next token of the sequence whose cache is `caches[b]`
    /// (each at its own position). The matrix products run on all rows at
    /// once, so the weights are streamed once per step instead of once per
    /// sequence; RoPE and attention stay per sequence. Returns the final
    /// hidden states [B, d]. Row `b` equals `forward` on that sequence alone.
    pub fn forward_batch(&self, embeds: &Tensor, caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let (rows, _) = embeds.dims2()?;
        if rows != caches.len() {
            return Err(ModelError::Input(format!(
                "{rows} embedding rows for {} sequences",
                caches.len()
            )));
        }
        if rows == 1 {
            return self.forward(embeds, caches[0]);
        }
        let context = self.cfg.max_position_embeddings;
        if let Some(full) = caches.iter().find(|c| c.len() + 1 > context) {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens exceeds the context of {context} tokens",
                full.len() + 1
            )));
        }
        if rows <= blip3_kernels::gemv::MAX_ROWS {
            return self.decode_rows(embeds, caches);
        }
        for cache in caches.iter_mut() {
            cache.reserve(cache.len() + 1);
        }
        let mut x = embeds.clone();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let qkv = layer.qkv_proj.forward(&h)?;
            let mut outs = Vec::with_capacity(rows);
            for (b, cache) in caches.iter_mut().enumerate() {
                let row = qkv.narrow(0, b, 1)?;
                outs.push(self.attend(&row, cache, li)?);
            }
            let out = Tensor::cat(&outs, 0)?;
            x = self.mlp_block(layer, &layer.o_proj.forward_residual(&out, &x)?)?;
        }
        for cache in caches.iter_mut() {
            cache.advance(1);
        }
        self.norm.forward(&x)
    }

    /// One new token for each of `caches.len()` sequences (rows of `embeds`
    /// [B, d]) on host buffers: the decode step. Same arithmetic as the
    /// tensor path (RMSNorm, RoPE, SiLU and the residual adds in F32, the
    /// same matrix kernels), but no tensor allocations or parallel regions
    /// besides the matrix products and attention, which matters when a step
    /// is ~200 small operations around 4 GEMVs per layer.
    fn decode_rows(&self, embeds: &Tensor, caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let rows = caches.len();
        let context = self.cfg.max_position_embeddings;
        if let Some(full) = caches.iter().find(|c| c.len() + 1 > context) {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens exceeds the context of {context} tokens",
                full.len() + 1
            )));
        }
        for cache in caches.iter_mut() {
            cache.reserve(cache.len() + 1);
        }
        let d = self.cfg.hidden_size;
        let embeds = embeds.flatten_all()?;
        with_reused(&DECODE_BUFFERS, |buf| {
            self.decode_layers(&embeds, caches, buf)?;
            let DecodeBuffers { x, h, .. } = buf;
            self.norm.forward_rows(x, h);
            Ok(Tensor::from_slice(h, (rows, d), embeds.device())?)
        })
    }

    /// The layers of [`Self::decode_rows`], on `buf` (its `x` ends as the
    /// last layer's output).
    fn decode_layers(
        &self,
        embeds: &Tensor,
        caches: &mut [&mut KvCache],
        buf: &mut DecodeBuffers,
    ) -> Result<()> {
        let rows = caches.len();
        let (heads, kv_heads, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
        );
        let inter = self.cfg.intermediate_size;
        let (q_width, kv_width) = (heads * hd, kv_heads * hd);
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        let DecodeBuffers {
            x,
            h,
            qkv,
            proj,
            gate_up,
            attn,
            act,
        } = buf;
        x.clear();
        x.extend_from_slice(&embeds.to_vec1::<f32>()?);
        attn.resize(rows * q_width, 0.0);
        act.resize(rows * inter, 0.0);
        for (li, layer) in self.layers.iter().enumerate() {
            layer.input_layernorm.forward_rows(x, h);
            layer.qkv_proj.forward_rows(h, rows, qkv)?;
            for (b, cache) in caches.iter_mut().enumerate() {
                let row = &mut qkv[b * (q_width + 2 * kv_width)..][..q_width + 2 * kv_width];
                let position = cache.len();
                let (q, kv) = row.split_at_mut(q_width);
                let (k, v) = kv.split_at_mut(kv_width);
                self.rope.apply_host(q, hd, position);
                self.rope.apply_host(k, hd, position);
                // One position: [kv_heads, hd] is the cache's [kv_heads, 1, hd].
                cache.write(li, k, v, 1);
                let first = self
                    .cfg
                    .sliding_window
                    .map_or(0, |w| position.saturating_sub(w));
                cache.attend_one(
                    li,
                    q,
                    heads / kv_heads,
                    first..position + 1,
                    scale,
                    &mut attn[b * q_width..(b + 1) * q_width],
                );
            }
            layer.o_proj.forward_rows(attn, rows, proj)?;
            add_into(x, proj);
            layer.post_attention_layernorm.forward_rows(x, h);
            layer.gate_up_proj.forward_rows(h, rows, gate_up)?;
            for (gu, a) in gate_up
                .chunks_exact(2 * inter)
                .zip(act.chunks_exact_mut(inter))
            {
                let (gate, up) = gu.split_at(inter);
                for ((o, &g), &u) in a.iter_mut().zip(gate).zip(up) {
                    // candle's SiLU, then `up · silu(gate)`.
                    *o = u * (g / (1.0 + (-g).exp()));
                }
            }
            layer.down_proj.forward_rows(act, rows, proj)?;
            add_into(x, proj);
        }
        for cache in caches.iter_mut() {
            cache.advance(1);
        }
        Ok(())
    }

    /// Final hidden states [M, d] → logits [M, initial_tokenizer_len + 3].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward(hidden)
    }

    /// Self-attention of one sequence: `qkv` [L, (H + 2·KV)·hd] at positions
    /// `cache.len()..+L` → RoPE, store keys/values in layer `li` of the cache,
    /// attend → [L, d] (heads merged, before `o_proj`). One position reads the
    /// cache in place with the decode kernel; several positions (prefill) use
    /// the blocked causal/sliding-window kernel on the cached keys/values.
    fn attend(&self, qkv: &Tensor, cache: &mut KvCache, li: usize) -> Result<Tensor> {
        let len = qkv.dim(0)?;
        let start = cache.len();
        let (heads, kv_heads, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
        );
        let split = |offset: usize, n: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(D::Minus1, offset * hd, n * hd)?
                .reshape((1, len, n, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = self.rope.apply(&split(0, heads)?, start)?;
        let k = self.rope.apply(&split(heads, kv_heads)?, start)?;
        let v = split(heads + kv_heads, kv_heads)?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
        cache.write(li, &flat(&k)?, &flat(&v)?, len);
        let total = start + len;
        let scale = 1.0 / (hd as f64).sqrt();
        if len == 1 {
            let first = self
                .cfg
                .sliding_window
                .map_or(0, |w| start.saturating_sub(w));
            let mut out = vec![0f32; heads * hd];
            cache.attend_one(
                li,
                &flat(&q)?,
                heads / kv_heads,
                first..total,
                scale as f32,
                &mut out,
            );
            return Ok(Tensor::from_vec(out, (1, heads * hd), q.device())?);
        }
        let (keys, values) = cache.read(li, total);
        let qs = flat(&q)?;
        let shape = AttentionShape {
            batch: 1,
            heads,
            kv_heads,
            queries: len,
            keys: total,
            head_dim: hd,
        };
        let mut out = vec![0f32; len * heads * hd];
        blip3_kernels::attention::attention_with(
            self.layers[li].qkv_proj.attention_products(),
            shape,
            Strided::contiguous(&qs, heads, len, hd),
            Strided::contiguous(&keys, kv_heads, total, hd),
            Strided::contiguous(&values, kv_heads, total, hd),
            scale as f32,
            Visibility::Causal {
                query_start: start,
                window: self.cfg.sliding_window,
            },
            &mut out,
        );
        Ok(Tensor::from_vec(out, (len, heads * hd), q.device())?)
    }

    /// `x + down(silu(gate) · up)` on `post_attention_layernorm(x)`.
    fn mlp_block(&self, layer: &DecoderLayer, x: &Tensor) -> Result<Tensor> {
        let h = layer.post_attention_layernorm.forward(x)?;
        let gu = layer.gate_up_proj.forward(&h)?;
        let inter = self.cfg.intermediate_size;
        let gate = gu.narrow(D::Minus1, 0, inter)?;
        let up = gu.narrow(D::Minus1, inter, inter)?;
        let act = (up * candle_nn::ops::silu(&gate)?)?;
        layer.down_proj.forward_residual(&act, x)
    }
}

/// The host buffers of a decode step, kept per thread from step to step
/// (sized by the first step, then reused: decode allocates no activations).
#[derive(Default)]
struct DecodeBuffers {
    /// The residual stream [rows, d].
    x: Vec<f32>,
    /// A normalised copy of it.
    h: Vec<f32>,
    qkv: Vec<f32>,
    /// `o_proj` and `down_proj` outputs.
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    /// Attention outputs, heads merged.
    attn: Vec<f32>,
    /// `up · silu(gate)`.
    act: Vec<f32>,
}

thread_local! {
    static DECODE_BUFFERS: RefCell<DecodeBuffers> = RefCell::default();
}

/// `x += y` element-wise (the residual adds).
fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Phi-3's checkpoint keys under `prefix` (`vlm.lang_model`), with the
/// decoupled embedding and head (`lm_head.bias` included: the real checkpoints
/// hold it).
pub fn tensor_specs(prefix: &str, cfg: &Phi3Config) -> Vec<crate::checkpoint::TensorSpec> {
    use crate::checkpoint::{TensorSpec, NORM, WEIGHT};
    use crate::decoupled::NUM_ADDITIONAL;
    let mut out = Vec::new();
    let (w, norm) = (WEIGHT, NORM);
    let t = cfg;
    let lm = prefix;
    let (h, vocab) = (t.hidden_size, t.vocab_size);
    let qkv = (t.num_attention_heads + 2 * t.kv_heads()) * t.head_dim();
    out.push(TensorSpec::new(
        format!("{lm}.model.embed_tokens.weight"),
        &[vocab, h],
        w,
    ));
    out.push(TensorSpec::new(
        format!("{lm}.model.embed_tokens.additional_embedding.weight"),
        &[NUM_ADDITIONAL, h],
        w,
    ));
    for i in 0..t.num_hidden_layers {
        let b = format!("{lm}.model.layers.{i}");
        out.push(TensorSpec::new(
            format!("{b}.self_attn.qkv_proj.weight"),
            &[qkv, h],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.self_attn.o_proj.weight"),
            &[h, h],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.mlp.gate_up_proj.weight"),
            &[2 * t.intermediate_size, h],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.mlp.down_proj.weight"),
            &[h, t.intermediate_size],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.input_layernorm.weight"),
            &[h],
            norm,
        ));
        out.push(TensorSpec::new(
            format!("{b}.post_attention_layernorm.weight"),
            &[h],
            norm,
        ));
    }
    out.push(TensorSpec::new(
        format!("{lm}.model.norm.weight"),
        &[h],
        norm,
    ));
    out.push(TensorSpec::new(
        format!("{lm}.lm_head.weight"),
        &[vocab, h],
        w,
    ));
    out.push(TensorSpec::new(format!("{lm}.lm_head.bias"), &[vocab], w));
    out.push(TensorSpec::new(
        format!("{lm}.lm_head.additional_fc.weight"),
        &[NUM_ADDITIONAL, h],
        w,
    ));
    out.push(TensorSpec::new(
        format!("{lm}.lm_head.additional_fc.bias"),
        &[NUM_ADDITIONAL],
        w,
    ));
    out
}
