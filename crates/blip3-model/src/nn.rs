//! Small layers shared by the model parts: linear, LayerNorm, RMSNorm, activations.
//!
//! Activations are always F32 (the reference precision). Matrix weights may be
//! held in BF16/F16 to halve memory; they are widened to F32 for each product.

use candle_core::{DType, Tensor, D};

use crate::weights::WeightStore;
use crate::Result;

/// `y = x·Wᵀ + b` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{prefix}.weight` [out, in] and, if `bias`, `{prefix}.bias` [out].
    pub fn load(
        store: &WeightStore,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = store.matrix(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = if bias {
            Some(store.f32(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// Wraps existing tensors.
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight [out, in].
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies the layer to `x` [..., in].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        if self.weight.dtype() == DType::BF16 && rows <= blip3_kernels::gemv::MAX_ROWS {
            if let Some(y) = self.gemv_bf16(&x2)? {
                let mut out_dims = dims;
                let last = out_dims.len() - 1;
                out_dims[last] = self.out_dim();
                return Ok(y.reshape(out_dims)?);
            }
        }
        let w = if self.weight.dtype() == DType::F32 {
            self.weight.clone()
        } else {
            self.weight.to_dtype(DType::F32)?
        };
        let mut y = x2.matmul(&w.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.out_dim();
        Ok(y.reshape(out_dims)?)
    }
}

impl Linear {
    /// Few-row product against a BF16 weight with the streaming GEMV kernel
    /// (decode): reads the weight once, in BF16, instead of widening it first.
    /// `None` when the weight is not a contiguous CPU BF16 buffer.
    fn gemv_bf16(&self, x2: &Tensor) -> Result<Option<Tensor>> {
        let (rows, k) = x2.dims2()?;
        let n = self.out_dim();
        let xs: Vec<f32> = x2.flatten_all()?.to_vec1()?;
        let mut y = vec![0f32; rows * n];
        {
            let (storage, layout) = self.weight.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                return Ok(None);
            };
            let Some((start, end)) = layout.contiguous_offsets() else {
                return Ok(None);
            };
            let data: &[half::bf16] = cpu.as_slice()?;
            blip3_kernels::gemv::gemv_bf16(&data[start..end], &xs, &mut y, rows, n, k);
        }
        let mut y = Tensor::from_vec(y, (rows, n), x2.device())?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        Ok(Some(y))
    }
}

/// LayerNorm with affine weight and bias (open_clip / PyTorch semantics).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias` [dim].
    pub fn load(store: &WeightStore, prefix: &str, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: store.f32(&format!("{prefix}.weight"), &[dim])?,
            bias: store.f32(&format!("{prefix}.bias"), &[dim])?,
            eps,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(candle_nn::ops::layer_norm(
            &x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// Phi-3 RMSNorm: `x · rsqrt(mean(x²) + eps)` in F32, then times the weight.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Loads `{prefix}.weight` [dim].
    pub fn load(store: &WeightStore, prefix: &str, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: store.f32(&format!("{prefix}.weight"), &[dim])?,
            eps,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(candle_nn::ops::rms_norm(&x, &self.weight, self.eps)?)
    }
}

/// open_clip's QuickGELU: `x · sigmoid(1.702·x)`.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    let gate = candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?;
    Ok((x * gate)?)
}

/// Exact (erf) GELU, as `nn.GELU()` in the perceiver.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu_erf()?)
}

/// Scaled dot-product attention over `[B, H, Tq, hd]` × `[B, H, Tk, hd]`, with an
/// optional additive mask broadcastable to `[B, H, Tq, Tk]`; softmax in F32.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let q = (q * scale)?.contiguous()?;
    let kt = k.transpose(D::Minus2, D::Minus1)?.contiguous()?;
    let mut scores = q.matmul(&kt)?;
    if let Some(m) = mask {
        scores = scores.broadcast_add(m)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(&v.contiguous()?)?)
}
