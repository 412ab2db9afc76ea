//! HF `SiglipVisionTransformer` (so400m-patch14-384), family spec §2.2.
//!
//! Patch convolution (with bias, "valid": g = ⌊S / 14⌋ patches per side, the
//! last S − 14·g pixel rows and columns unseen), learned position embeddings
//! (no class token), pre-norm encoder layers with GELU-tanh MLPs, and
//! `post_layernorm`. The attention-pooling head is not part of xGen-MM's path.

use blip3_kernels::activation::Activation;
use blip3_kernels::attention::Strided;
use candle_core::Tensor;

use crate::config::VisionCfg;
use crate::family::VisionTower;
use crate::nn::{vision_attention, with_f32, LayerNorm, Linear};
use crate::weights::WeightStore;
use crate::Result;

/// One `SiglipEncoderLayer`.
struct Layer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Layer {
    fn load(store: &WeightStore, prefix: &str, cfg: &VisionCfg) -> Result<Self> {
        let (c, eps) = (cfg.width, cfg.layer_norm_eps as f32);
        let proj =
            |name: &str| Linear::load(store, &format!("{prefix}.self_attn.{name}"), c, c, true);
        Ok(Self {
            layer_norm1: LayerNorm::load(store, &format!("{prefix}.layer_norm1"), c, eps)?,
            q_proj: proj("q_proj")?,
            k_proj: proj("k_proj")?,
            v_proj: proj("v_proj")?,
            out_proj: proj("out_proj")?,
            layer_norm2: LayerNorm::load(store, &format!("{prefix}.layer_norm2"), c, eps)?,
            fc1: Linear::load(store, &format!("{prefix}.mlp.fc1"), c, cfg.mlp_width, true)?,
            fc2: Linear::load(store, &format!("{prefix}.mlp.fc2"), cfg.mlp_width, c, true)?,
        })
    }

    fn forward(&self, x: &Tensor, heads: usize) -> Result<Tensor> {
        let (n, t, c) = x.dims3()?;
        let hd = c / heads;
        let normed = self.layer_norm1.forward(x)?;
        let q = self.q_proj.forward(&normed)?;
        let k = self.k_proj.forward(&normed)?;
        let v = self.v_proj.forward(&normed)?;
        // [N, T, C] each, heads side by side in a row: read in place.
        fn view(data: &[f32], t: usize, c: usize, hd: usize) -> Strided<'_> {
            Strided {
                data,
                offset: 0,
                batch: t * c,
                head: hd,
                token: c,
            }
        }
        let products = self.q_proj.attention_products();
        let out = with_f32(&q, |q| {
            with_f32(&k, |k| {
                with_f32(&v, |v| {
                    vision_attention(
                        products,
                        (n, t, heads, hd),
                        view(q, t, c, hd),
                        view(k, t, c, hd),
                        view(v, t, c, hd),
                        x.device(),
                    )
                })
            })
        })?;
        let h = self.out_proj.forward_residual(&out, x)?;
        let hidden = self
            .fc1
            .forward_act(&self.layer_norm2.forward(&h)?, Activation::GeluTanh)?;
        self.fc2.forward_residual(&hidden, &h)
    }
}

/// The SigLIP vision transformer up to `post_layernorm`.
pub struct SiglipVisionTransformer {
    cfg: VisionCfg,
    /// The patch convolution as a linear layer over [3·p·p] (channel, ky, kx).
    patch_embed: Linear,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    post_layernorm: LayerNorm,
}

impl SiglipVisionTransformer {
    /// Loads the tower from keys under `prefix` (`vlm.vision_encoder`);
    /// `head.*` is not read.
    pub fn load(store: &WeightStore, prefix: &str, cfg: &VisionCfg) -> Result<Self> {
        let (c, p, g) = (cfg.width, cfg.patch_size, cfg.grid());
        let emb = format!("{prefix}.embeddings");
        let conv = store.matrix(&format!("{emb}.patch_embedding.weight"), &[c, 3, p, p])?;
        let bias = store.f32(&format!("{emb}.patch_embedding.bias"), &[c])?;
        let layers = (0..cfg.layers)
            .map(|i| Layer::load(store, &format!("{prefix}.encoder.layers.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: Linear::from_parts(conv.reshape((c, 3 * p * p))?, Some(bias))?,
            position_embedding: store
                .f32(&format!("{emb}.position_embedding.weight"), &[g * g, c])?,
            layers,
            post_layernorm: LayerNorm::load(
                store,
                &format!("{prefix}.post_layernorm"),
                c,
                cfg.layer_norm_eps as f32,
            )?,
        })
    }
}

impl VisionTower for SiglipVisionTransformer {
    fn config(&self) -> &VisionCfg {
        &self.cfg
    }

    /// `pixel_values` [N, 3, S, S] → `last_hidden_state` [N, g², C].
    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (n, _, _, _) = pixel_values.dims4()?;
        let (c, p, g) = (self.cfg.width, self.cfg.patch_size, self.cfg.grid());
        // The valid convolution sees only the top-left g·p pixels.
        let seen = pixel_values.narrow(2, 0, g * p)?.narrow(3, 0, g * p)?;
        let patches = seen
            .reshape((n, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n * g * g, 3 * p * p))?;
        let embed = self.patch_embed.forward(&patches)?.reshape((n, g * g, c))?;
        let mut x = embed.broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, self.cfg.heads)?;
        }
        self.post_layernorm.forward(&x)
    }
}
