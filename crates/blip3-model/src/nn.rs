//! Small layers shared by the model parts: linear, LayerNorm, RMSNorm, activations.
//!
//! Activations are always F32 (the reference precision). Matrix weights may be
//! held in BF16/F16 (half the memory) or Q8_0/Q4_0; few-row products (decode)
//! run streaming GEMV kernels on them directly, many-row products the packing
//! GEMM of `blip3-kernels`, which widens the weight block by block as it packs.

use std::sync::Arc;

use blip3_kernels::activation::Activation;
use blip3_kernels::gemm;
use blip3_kernels::q4::Q4Matrix;
use blip3_kernels::q4k::Q4KMatrix;
use blip3_kernels::q8::{self, Q8Matrix};
use blip3_kernels::quantized::QuantizedMatrix;
use blip3_kernels::scratch::zeroed;
use candle_core::{DType, Tensor};

use crate::weights::{Quantization, WeightStore};
use crate::Result;

/// How a linear layer's weight is held.
#[derive(Debug, Clone)]
enum Weight {
    /// A candle tensor [out, in] in F32, BF16 or F16.
    Dense(Tensor),
    /// Q8_0 or Q4_0 blocks (see `blip3_kernels::quantized`).
    Quantized(Arc<dyn QuantizedMatrix>),
}

/// `y = x·Wᵀ + b` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    /// The bias on the host, for the GEMM epilogue.
    bias_host: Option<Arc<Vec<f32>>>,
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
        let bias = if bias {
            Some(store.f32(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Self::load_weight(store, &format!("{prefix}.weight"), in_dim, out_dim, bias)
    }

    /// Loads weight `name` [out, in]: the pre-quantised blocks when the
    /// checkpoint holds them, else the dense tensor, quantised now (and
    /// recorded in the store for `blip3 quantize`) when the store asks for it.
    pub fn load_weight(
        store: &WeightStore,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: Option<Tensor>,
    ) -> Result<Self> {
        if let Some(q) = store.prequantized(name, &[out_dim, in_dim])? {
            return Self::assemble(Weight::Quantized(q), bias);
        }
        let weight = store.matrix(name, &[out_dim, in_dim])?;
        let linear = Self::with_policy(store, weight, bias)?;
        if let Weight::Quantized(q) = &linear.weight {
            store.record_quantized(name, q.clone());
        }
        Ok(linear)
    }

    /// Wraps a loaded weight [out, in], quantising it when the store asks for it.
    pub fn with_policy(store: &WeightStore, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let weight = match store.quantization() {
            Some(format) if in_dim % q8::BLOCK == 0 => {
                let values: Vec<f32> = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                let q4_0 = || {
                    Q4Matrix::quantize(&values, out_dim, in_dim)
                        .map(|q| Arc::new(q) as Arc<dyn QuantizedMatrix>)
                };
                let quantized: Option<Arc<dyn QuantizedMatrix>> = match format {
                    Quantization::Q8_0 => Q8Matrix::quantize(&values, out_dim, in_dim)
                        .map(|q| Arc::new(q) as Arc<dyn QuantizedMatrix>),
                    Quantization::Q4_0 => q4_0(),
                    // Rows that are not whole 256-value super-blocks fall back
                    // to Q4_0 (same bits per weight), as llama.cpp does.
                    Quantization::Q4K => Q4KMatrix::quantize(&values, out_dim, in_dim)
                        .map(|q| Arc::new(q) as Arc<dyn QuantizedMatrix>)
                        .or_else(q4_0),
                };
                quantized.map_or(Weight::Dense(weight), Weight::Quantized)
            }
            _ => Weight::Dense(weight),
        };
        Self::assemble(weight, bias)
    }

    /// Wraps existing tensors, kept dense.
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Self::assemble(Weight::Dense(weight), bias)
    }

    fn assemble(weight: Weight, bias: Option<Tensor>) -> Result<Self> {
        let bias_host = match &bias {
            Some(b) => Some(Arc::new(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)),
            None => None,
        };
        Ok(Self {
            weight,
            bias,
            bias_host,
        })
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.dims()[0],
            Weight::Quantized(q) => q.rows(),
        }
    }

    /// Storage format of the weight: `f32`, `bf16`, `f16`, `q8_0` or `q4_0`.
    pub fn weight_format(&self) -> String {
        match &self.weight {
            Weight::Dense(w) => format!("{:?}", w.dtype()).to_lowercase(),
            Weight::Quantized(q) => q.format().into(),
        }
    }

    /// The attention arithmetic that goes with this layer's weights: BF16
    /// products for BF16 weights (activations are rounded to BF16 for every
    /// product of such a layer anyway) and for block formats (whose
    /// many-row products round activations to BF16 or quantise them to 8
    /// bits wherever a BF16 attention path exists; elsewhere `Bf16` runs in
    /// F32), F32 for F32 and F16.
    pub fn attention_products(&self) -> blip3_kernels::attention::Products {
        use blip3_kernels::attention::Products;
        match &self.weight {
            Weight::Dense(w) if w.dtype() == DType::BF16 => Products::Bf16,
            Weight::Quantized(_) => Products::Bf16,
            _ => Products::F32,
        }
    }

    /// Applies the layer to `x` [..., in].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::Identity)
    }

    /// `activation(x·Wᵀ + b)`; many-row products apply the bias and the
    /// activation in the GEMM's epilogue, on tiles still in cache.
    pub fn forward_act(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        self.forward_with(x, activation, None)
    }

    /// `residual + (x·Wᵀ + b)` (a transformer block's skip connection, the
    /// same values as adding afterwards); many-row products add the residual
    /// in the GEMM's epilogue instead of in one more pass over the output.
    /// `residual` has the output's shape.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Activation::Identity, Some(residual))
    }

    fn forward_with(
        &self,
        x: &Tensor,
        activation: Activation,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let few = match &self.weight {
            Weight::Quantized(q) if gemm::runs_on_integers(q.as_ref()) => {
                rows <= blip3_kernels::gemv::MAX_ROWS
            }
            Weight::Quantized(_) => rows <= QUANTIZED_GEMV_ROWS,
            Weight::Dense(_) => rows <= blip3_kernels::gemv::MAX_ROWS,
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.out_dim();
        if let Some(r) = residual {
            if r.dims() != out_dims.as_slice() {
                return Err(candle_core::Error::ShapeMismatchBinaryOp {
                    lhs: r.shape().clone(),
                    rhs: out_dims.as_slice().into(),
                    op: "residual",
                }
                .into());
            }
        }
        let fused = if few {
            None
        } else {
            let run = |residual_values: Option<&[f32]>| -> Result<Option<Tensor>> {
                let epilogue = gemm::Epilogue {
                    bias: self.bias_host.as_deref().map(|b| b.as_slice()),
                    activation,
                    residual: residual_values,
                };
                match &self.weight {
                    Weight::Quantized(q) => {
                        let mut y = zeroed(rows * q.rows());
                        with_f32(&x2, |xs| {
                            gemm::gemm_with(xs, rows, q.as_ref(), &mut y, epilogue);
                            Ok(())
                        })?;
                        Ok(Some(Tensor::from_vec(y, (rows, q.rows()), x.device())?))
                    }
                    Weight::Dense(w) => dense_gemm(w, &x2, epilogue),
                }
            };
            match residual {
                Some(r) => with_f32(r, |values| run(Some(values)))?,
                None => run(None)?,
            }
        };
        let fused_residual = fused.is_some();
        let y = match fused {
            Some(y) => y,
            None => {
                let mut y = match &self.weight {
                    Weight::Quantized(q) => {
                        let xs: Vec<f32> = x2.flatten_all()?.to_vec1()?;
                        let mut y = vec![0f32; rows * q.rows()];
                        // MAX_ROWS rows per pass over the weight.
                        let chunk = blip3_kernels::gemv::MAX_ROWS;
                        for (xc, yc) in xs
                            .chunks(chunk * in_dim)
                            .zip(y.chunks_mut(chunk * q.rows()))
                        {
                            q.gemv(xc, yc, xc.len() / in_dim);
                        }
                        Tensor::from_vec(y, (rows, q.rows()), x.device())?
                    }
                    Weight::Dense(w) if few && w.dtype() == DType::BF16 => {
                        match gemv_bf16(w, &x2)? {
                            Some(y) => y,
                            None => x2.matmul(&widen(w)?.t()?)?,
                        }
                    }
                    Weight::Dense(w) if w.dtype() == DType::F32 => x2.matmul(&w.t()?)?,
                    Weight::Dense(w) => x2.matmul(&widen(w)?.t()?)?,
                };
                if let Some(b) = &self.bias {
                    y = y.broadcast_add(b)?;
                }
                match activation {
                    Activation::Identity => y,
                    Activation::QuickGelu => quick_gelu(&y)?,
                    // candle's `gelu` is the tanh approximation.
                    Activation::GeluTanh => y.gelu()?,
                }
            }
        };
        let y = y.reshape(out_dims)?;
        Ok(match residual {
            Some(r) if !fused_residual => (y + r)?,
            _ => y,
        })
    }
}

/// Up to this many rows, a block-quantised product runs as GEMVs of
/// [`MAX_ROWS`](blip3_kernels::gemv::MAX_ROWS) rows (activations quantised
/// to Q8_0, as in decode) instead of the GEMM, which decodes every weight
/// block to F32 once per product: for a short prompt (a follow-up chat turn)
/// the few passes over the packed weight cost less than one decoding pass.
/// Where the GEMM multiplies Q8_0 codes as integers
/// ([`gemm::runs_on_integers`]) it decodes nothing, and only decode-sized
/// products take the GEMV.
pub const QUANTIZED_GEMV_ROWS: usize = 32;

impl Linear {
    /// `x·Wᵀ + b` for `rows` rows on host buffers (`x` [rows, in], `out`
    /// resized to [rows, out]): the decode step's path, without tensor
    /// allocations. Few rows against a quantised or BF16 weight run the GEMV
    /// kernels straight into `out`; anything else goes through
    /// [`forward`](Self::forward) (same results).
    pub fn forward_rows(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        let n = self.out_dim();
        out.resize(rows * n, 0.0);
        let few = (1..=blip3_kernels::gemv::MAX_ROWS).contains(&rows);
        let done = match &self.weight {
            Weight::Quantized(q) if few => {
                q.gemv(x, out, rows);
                true
            }
            Weight::Dense(w) if few && w.dtype() == DType::BF16 => gemv_bf16_into(w, x, rows, out)?,
            _ => false,
        };
        if !done {
            let device = match &self.weight {
                Weight::Dense(w) => w.device().clone(),
                Weight::Quantized(_) => candle_core::Device::Cpu,
            };
            let t = Tensor::from_slice(x, (rows, x.len() / rows), &device)?;
            let y = self.forward(&t)?.flatten_all()?.to_vec1::<f32>()?;
            out.copy_from_slice(&y);
            return Ok(());
        }
        if let Some(b) = &self.bias_host {
            for row in out.chunks_exact_mut(n) {
                for (o, &bv) in row.iter_mut().zip(b.iter()) {
                    *o += bv;
                }
            }
        }
        Ok(())
    }
}

/// Runs `f` on `t`'s values as F32, in place when `t` is a contiguous F32
/// CPU tensor (a ViT layer's fused QKV is 56 MB, copied 32 times per image
/// otherwise), else on a copy.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return f(&cpu.as_slice::<f32>()?[start..end]);
        }
    }
    let owned: Vec<f32> = t.flatten_all()?.to_vec1()?;
    f(&owned)
}

/// Many-row product `x2 · Wᵀ` with the packing GEMM of `blip3-kernels`,
/// reading an F32/BF16/F16 CPU weight in place. `None` for other devices or
/// layouts (the caller falls back to candle's matmul).
fn dense_gemm(weight: &Tensor, x2: &Tensor, epilogue: gemm::Epilogue) -> Result<Option<Tensor>> {
    let (rows, k) = x2.dims2()?;
    let n = weight.dims()[0];
    let (storage, layout) = weight.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        return Ok(None);
    };
    let mut y = zeroed(rows * n);
    // The activations in place when they are a contiguous F32 CPU tensor (a
    // copy of up to 75 MB per ViT product otherwise).
    let done = with_f32(x2, |xs| {
        let mut run = |w: &dyn gemm::WeightRows| gemm::gemm_with(xs, rows, w, &mut y, epilogue);
        Ok(match weight.dtype() {
            DType::F32 => {
                gemm::DenseRows::new(&cpu.as_slice::<f32>()?[start..end], n, k).map(|w| run(&w))
            }
            DType::BF16 => gemm::DenseRows::new(&cpu.as_slice::<half::bf16>()?[start..end], n, k)
                .map(|w| run(&w)),
            DType::F16 => gemm::DenseRows::new(&cpu.as_slice::<half::f16>()?[start..end], n, k)
                .map(|w| run(&w)),
            _ => None,
        }
        .is_some())
    })?;
    Ok(done
        .then(|| Tensor::from_vec(y, (rows, n), x2.device()))
        .transpose()?)
}

/// A half-precision weight widened to F32 for candle's matmul; BF16 CPU
/// buffers use the parallel kernel, anything else candle's conversion.
fn widen(weight: &Tensor) -> Result<Tensor> {
    if weight.dtype() == DType::BF16 {
        let (storage, layout) = weight.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            let data: &[half::bf16] = cpu.as_slice()?;
            let mut out = vec![0f32; end - start];
            blip3_kernels::widen::widen_bf16(&data[start..end], &mut out);
            return Ok(Tensor::from_vec(out, weight.dims(), weight.device())?);
        }
    }
    Ok(weight.to_dtype(DType::F32)?)
}

/// Few-row product against a BF16 weight with the streaming GEMV kernel
/// (decode): reads the weight once, in BF16, instead of widening it first.
/// `None` when the weight is not a contiguous CPU BF16 buffer.
fn gemv_bf16(weight: &Tensor, x2: &Tensor) -> Result<Option<Tensor>> {
    let rows = x2.dims2()?.0;
    let xs: Vec<f32> = x2.flatten_all()?.to_vec1()?;
    let mut y = vec![0f32; rows * weight.dims()[0]];
    Ok(gemv_bf16_into(weight, &xs, rows, &mut y)?
        .then(|| Tensor::from_vec(y, (rows, weight.dims()[0]), x2.device()))
        .transpose()?)
}

/// `out` [rows, N] = `x` [rows, K] · `weightᵀ` with the BF16 GEMV kernel;
/// `false` (nothing written) when the weight is not a contiguous CPU buffer.
fn gemv_bf16_into(weight: &Tensor, x: &[f32], rows: usize, out: &mut [f32]) -> Result<bool> {
    let n = weight.dims()[0];
    let (storage, layout) = weight.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        return Ok(false);
    };
    let data: &[half::bf16] = cpu.as_slice()?;
    blip3_kernels::gemv::gemv_bf16(&data[start..end], x, out, rows, n, x.len() / rows);
    Ok(true)
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
    /// The weight on the host, for [`forward_rows`](Self::forward_rows).
    weight_host: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// Loads `{prefix}.weight` [dim].
    pub fn load(store: &WeightStore, prefix: &str, dim: usize, eps: f32) -> Result<Self> {
        let weight = store.f32(&format!("{prefix}.weight"), &[dim])?;
        Ok(Self {
            weight_host: weight.to_dtype(DType::F32)?.to_vec1()?,
            weight,
            eps,
        })
    }

    /// Normalises each row of `x` [rows, dim] into `out` (resized), with
    /// the arithmetic of [`forward`](Self::forward) (candle's `rms_norm`):
    /// a sequential F32 sum of squares, then `x / rms · weight`.
    pub fn forward_rows(&self, x: &[f32], out: &mut Vec<f32>) {
        let dim = self.weight_host.len();
        out.resize(x.len(), 0.0);
        for (src, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let sum2 = src.iter().map(|&v| v * v).sum::<f32>();
            let m = (sum2 / dim as f32 + self.eps).sqrt();
            for ((d, &v), &w) in dst.iter_mut().zip(src).zip(&self.weight_host) {
                *d = v / m * w;
            }
        }
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

/// Bidirectional multi-head attention of the vision towers: `n` sequences of
/// `t` tokens, queries, keys and values read in place through strided views
/// (heads side by side in a row), softmax(q·kᵀ/√hd)·v over every key.
/// Returns `[n, t, heads·hd]` with the heads merged, ready for the output
/// projection.
pub fn vision_attention(
    products: blip3_kernels::attention::Products,
    (n, t, heads, hd): (usize, usize, usize, usize),
    q: blip3_kernels::attention::Strided<'_>,
    k: blip3_kernels::attention::Strided<'_>,
    v: blip3_kernels::attention::Strided<'_>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    use blip3_kernels::attention::{AttentionShape, Visibility};
    let shape = AttentionShape {
        batch: n,
        heads,
        kv_heads: heads,
        queries: t,
        keys: t,
        head_dim: hd,
    };
    let mut out = zeroed(n * t * heads * hd);
    blip3_kernels::attention::attention_with(
        products,
        shape,
        q,
        k,
        v,
        1.0 / (hd as f32).sqrt(),
        Visibility::All,
        &mut out,
    );
    Ok(Tensor::from_vec(out, (n, t, heads * hd), device)?)
}
