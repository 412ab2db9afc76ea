//! BLIP-3's decoupled embedding and output head (spec §8.1, §8.3).
//!
//! The three tokens BLIP-3 adds (`<image>`, `<image placeholder>`,
//! `<|endofchunk|>`) live in separate parameters: ids ≥ `initial_tokenizer_len`
//! read `additional_embedding`, and the head appends `additional_fc`'s three
//! logits to the first `initial_tokenizer_len` columns of the original head.

use candle_core::{DType, Tensor};

use crate::nn::Linear;
use crate::weights::WeightStore;
use crate::{ModelError, Result};

/// Number of additional tokens.
pub const NUM_ADDITIONAL: usize = 3;

/// `DecoupledEmbedding`: original rows plus three additional rows.
pub struct DecoupledEmbedding {
    weight: Tensor,
    additional: Tensor,
    initial_len: usize,
}

impl DecoupledEmbedding {
    /// Loads `{prefix}.weight` [vocab, d] and `{prefix}.additional_embedding.weight` [3, d].
    pub fn load(
        store: &WeightStore,
        prefix: &str,
        vocab: usize,
        dim: usize,
        initial_len: usize,
    ) -> Result<Self> {
        Ok(Self {
            weight: store.matrix(&format!("{prefix}.weight"), &[vocab, dim])?,
            additional: store.f32(
                &format!("{prefix}.additional_embedding.weight"),
                &[NUM_ADDITIONAL, dim],
            )?,
            initial_len,
        })
    }

    /// Largest valid id + 1 (`initial_tokenizer_len` + 3).
    pub fn id_limit(&self) -> usize {
        self.initial_len + NUM_ADDITIONAL
    }

    /// Embeds `ids` → [len, d] (F32).
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let dim = self.weight.dim(1)?;
        let device = self.weight.device();
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            let id = id as usize;
            let row = if id < self.initial_len {
                self.weight.narrow(0, id, 1)?
            } else if id < self.id_limit() {
                self.additional.narrow(0, id - self.initial_len, 1)?
            } else {
                return Err(ModelError::Input(format!(
                    "token id {id} is outside the model's vocabulary (0..{})",
                    self.id_limit()
                )));
            };
            rows.push(row.to_dtype(DType::F32)?);
        }
        if rows.is_empty() {
            return Ok(Tensor::zeros((0, dim), DType::F32, device)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }
}

/// `DecoupledLinear`: `cat((x·Wᵀ + b)[:, :initial_len], x·Waᵀ + ba)`.
pub struct DecoupledHead {
    main: Linear,
    additional: Linear,
}

impl DecoupledHead {
    /// Loads `{prefix}.weight`, optional `{prefix}.bias` (absent → zeros, logged)
    /// and `{prefix}.additional_fc.{weight,bias}`. Only the first `initial_len`
    /// rows of the original head are kept: the rest never reach the logits.
    pub fn load(
        store: &WeightStore,
        prefix: &str,
        vocab: usize,
        dim: usize,
        initial_len: usize,
    ) -> Result<Self> {
        let weight = store.matrix(&format!("{prefix}.weight"), &[vocab, dim])?;
        let bias = match store.optional_f32(&format!("{prefix}.bias"), &[vocab])? {
            Some(b) => {
                tracing::debug!("{prefix}.bias present");
                b.narrow(0, 0, initial_len)?
            }
            None => {
                tracing::info!("{prefix}.bias absent from the checkpoint: using zeros");
                Tensor::zeros(initial_len, DType::F32, store.device())?
            }
        };
        let main = Linear::with_policy(
            store,
            weight.narrow(0, 0, initial_len)?.contiguous()?,
            Some(bias),
        )?;
        let additional = Linear::load(
            store,
            &format!("{prefix}.additional_fc"),
            dim,
            NUM_ADDITIONAL,
            true,
        )?;
        Ok(Self { main, additional })
    }

    /// Hidden states [M, d] → logits [M, initial_len + 3].
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let a = self.main.forward(hidden)?;
        let b = self.additional.forward(hidden)?;
        Ok(Tensor::cat(&[&a, &b], candle_core::D::Minus1)?)
    }
}
