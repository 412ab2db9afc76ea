//! open_clip `VisionTransformer` (ViT-H/14-378, QuickGELU), spec §4.
//!
//! Output is the patch tokens after `ln_post`, CLS dropped and `proj` unused:
//! `[N, g², W]` for N crops of S×S pixels, g = S / patch.

use candle_core::{Tensor, D};

use crate::config::VisionCfg;
use blip3_kernels::activation::Activation;
use blip3_kernels::attention::Strided;

use crate::family::VisionTower;
use crate::nn::{vision_attention, with_f32, LayerNorm, Linear};
use crate::weights::WeightStore;
use crate::Result;

/// One pre-norm residual block (`ResidualAttentionBlock`).
struct Block {
    ln_1: LayerNorm,
    in_proj: Linear,
    out_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
}

impl Block {
    fn load(store: &WeightStore, prefix: &str, cfg: &VisionCfg) -> Result<Self> {
        let (w, eps) = (cfg.width, cfg.layer_norm_eps as f32);
        let attn = format!("{prefix}.attn");
        // nn.MultiheadAttention stores the fused projection as in_proj_weight/bias.
        let in_proj = Linear::load_weight(
            store,
            &format!("{attn}.in_proj_weight"),
            w,
            3 * w,
            Some(store.f32(&format!("{attn}.in_proj_bias"), &[3 * w])?),
        )?;
        Ok(Self {
            ln_1: LayerNorm::load(store, &format!("{prefix}.ln_1"), w, eps)?,
            in_proj,
            out_proj: Linear::load(store, &format!("{attn}.out_proj"), w, w, true)?,
            ln_2: LayerNorm::load(store, &format!("{prefix}.ln_2"), w, eps)?,
            c_fc: Linear::load(store, &format!("{prefix}.mlp.c_fc"), w, cfg.mlp_width, true)?,
            c_proj: Linear::load(
                store,
                &format!("{prefix}.mlp.c_proj"),
                cfg.mlp_width,
                w,
                true,
            )?,
        })
    }

    fn forward(&self, x: &Tensor, heads: usize) -> Result<Tensor> {
        let (n, t, w) = x.dims3()?;
        let hd = w / heads;
        let qkv = self.in_proj.forward(&self.ln_1.forward(x)?)?;
        // [N, T, 3W] = (q | k | v), each W = heads × hd: read in place by the
        // blocked attention kernel, which writes [N, T, W] with heads merged.
        let products = self.in_proj.attention_products();
        let out = with_f32(&qkv, |data| {
            let part = |i: usize| Strided {
                data,
                offset: i * w,
                batch: t * 3 * w,
                head: hd,
                token: 3 * w,
            };
            vision_attention(
                products,
                (n, t, heads, hd),
                part(0),
                part(1),
                part(2),
                x.device(),
            )
        })?;
        let h = self.out_proj.forward_residual(&out, x)?;
        let hidden = self
            .c_fc
            .forward_act(&self.ln_2.forward(&h)?, Activation::QuickGelu)?;
        self.c_proj.forward_residual(&hidden, &h)
    }
}

/// The visual tower of `ViT-H-14-378-quickgelu`.
pub struct VisionTransformer {
    cfg: VisionCfg,
    /// `conv1.weight` as a matrix [W, 3·p·p] (channel, ky, kx order).
    patch_embed: Tensor,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    blocks: Vec<Block>,
    ln_post: LayerNorm,
}

impl VisionTransformer {
    /// Loads the tower from keys under `prefix` (`vlm.vision_encoder`).
    pub fn load(store: &WeightStore, prefix: &str, cfg: &VisionCfg) -> Result<Self> {
        let (w, p, g) = (cfg.width, cfg.patch_size, cfg.grid());
        let eps = cfg.layer_norm_eps as f32;
        let conv = store.matrix(&format!("{prefix}.conv1.weight"), &[w, 3, p, p])?;
        let blocks = (0..cfg.layers)
            .map(|i| Block::load(store, &format!("{prefix}.transformer.resblocks.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        // `proj` [W, 1024] exists in the checkpoint but BLIP-3 never uses it.
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: conv.reshape((w, 3 * p * p))?,
            class_embedding: store.f32(&format!("{prefix}.class_embedding"), &[w])?,
            positional_embedding: store
                .f32(&format!("{prefix}.positional_embedding"), &[g * g + 1, w])?,
            ln_pre: LayerNorm::load(store, &format!("{prefix}.ln_pre"), w, eps)?,
            blocks,
            ln_post: LayerNorm::load(store, &format!("{prefix}.ln_post"), w, eps)?,
        })
    }
}

impl VisionTower for VisionTransformer {
    fn config(&self) -> &VisionCfg {
        &self.cfg
    }

    /// `pixel_values` [N, 3, S, S] → patch tokens [N, g², W] after `ln_post`.
    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (n, _, s, _) = pixel_values.dims4()?;
        let (w, p) = (self.cfg.width, self.cfg.patch_size);
        let g = s / p;
        // Patch embedding as a matmul: [N, 3, g, p, g, p] → [N, g, g, 3, p, p].
        let patches = pixel_values
            .reshape((n, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n * g * g, 3 * p * p))?;
        let embed = Linear::from_parts(self.patch_embed.clone(), None)?.forward(&patches)?;
        let embed = embed.reshape((n, g * g, w))?;
        let cls = self
            .class_embedding
            .reshape((1, 1, w))?
            .broadcast_as((n, 1, w))?;
        let x = Tensor::cat(&[&cls, &embed], 1)?;
        let x = x.broadcast_add(&self.positional_embedding.unsqueeze(0)?)?;
        let mut x = self.ln_pre.forward(&x)?;
        for block in &self.blocks {
            x = block.forward(&x, self.cfg.heads)?;
        }
        let x = self.ln_post.forward(&x)?;
        Ok(x.narrow(D::Minus2, 1, g * g)?.contiguous()?)
    }
}
