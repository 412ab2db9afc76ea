//! The `blip3` Python package: a loaded model ([`Model`]) answers questions
//! about images with the blip3-rs engine, from Python.
//!
//! Compute runs with the GIL released. One model computes one request at a
//! time (a mutex around the pipeline: its kernels keep per-thread scratch
//! buffers and were not written for concurrent runs on one model); other
//! Python threads wait for it with the GIL released. Between generated tokens
//! (at most every 20 ms) the GIL is taken back briefly to check for signals,
//! so Ctrl-C stops a generation with `KeyboardInterrupt` within one token.

mod chat;
mod errors;
mod images;
mod stream;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use blip3_engine::parity::dump_tensors;
use blip3_engine::prompt::marked_chat_prompt;
use blip3_engine::{
    Choice, EncodedImage, Family, GenerationParams, MarkedText, Pipeline, PipelineOptions,
    RunOutput, SamplingParams, TextKind,
};
use blip3_model::phi3::KvPrecision;
use blip3_model::weights::{Quantization, WeightDtype};
use blip3_preprocess::decode::DEFAULT_MAX_PIXELS;
use blip3_preprocess::{AspectMode, RgbImage};
use pyo3::exceptions::{PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyList};
use safetensors::Dtype;

use crate::errors::{blip3_error, request_error, Failure};
use crate::images::ImageSource;
use crate::stream::TextStream;

/// Least time between two signal checks of a running generation.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// The question `generate` asks when none is given.
const DEFAULT_QUESTION: &str = "Describe this image.";

/// The model and what can be read without its lock.
struct Shared {
    pipeline: Mutex<Pipeline>,
    family: Family,
    max_pixels: u64,
    path: PathBuf,
    load_s: f64,
}

impl Shared {
    /// The pipeline, waited for by the caller (with the GIL released). A
    /// panic in an earlier run leaves it usable: runs take it by shared
    /// reference and change nothing in it.
    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What to ask: a question in the family's chat frame, a raw prompt, or a
/// templated chat.
enum PromptSpec {
    Question {
        question: String,
        system: Option<String>,
    },
    Raw(String),
    Marked(MarkedText),
}

/// One generation, owned so that it can run without the GIL or on a thread.
struct Job {
    images: Vec<ImageSource>,
    prompt: PromptSpec,
    params: GenerationParams,
    capture: bool,
}

impl Job {
    /// Decodes the images (without the model's lock), then generates;
    /// `on_choice` sees each token and may stop the run.
    fn run(
        self,
        shared: &Shared,
        on_choice: &mut dyn FnMut(&Pipeline, &Choice) -> ControlFlow<()>,
    ) -> Result<RunOutput, Failure> {
        let images = decode_all(self.images, shared.max_pixels)?;
        let prompt = match self.prompt {
            // The question and system text are plain text (typed `<image>`
            // or `<|end|>` stays text); ordinary text gives `blip3 generate`'s ids.
            PromptSpec::Question { question, system } => marked_chat_prompt(
                &question,
                system.as_deref(),
                shared.family.chat_image_marker(),
                images.len(),
            ),
            // As `blip3 generate --raw-prompt`: the text is the whole prompt.
            PromptSpec::Raw(text) => MarkedText::of(TextKind::Template, &text),
            PromptSpec::Marked(m) => m,
        };
        let pipeline = shared.lock();
        let p: &Pipeline = &pipeline;
        let output = p.generate_with(
            &images,
            &prompt,
            &self.params,
            self.capture,
            &mut |c: &Choice| on_choice(p, c),
        )?;
        Ok(output)
    }
}

fn decode_all(sources: Vec<ImageSource>, max_pixels: u64) -> Result<Vec<RgbImage>, Failure> {
    sources
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.decode(i, max_pixels))
        .collect()
}

/// A BLIP-3 / xGen-MM model loaded for inference.
///
/// `model` is a Hugging Face model folder or a Hub id (`owner/name[@revision]`,
/// through the standard HF cache). `dtype`: `'auto'` (as stored), `'f32'` or
/// `'bf16'`; `quantize`: `None`, `'q8_0'`, `'q4_0'` or `'q4_k'`; `threads`:
/// compute threads (sized once per process); `kv_cache`: `'auto'`, `'f32'` or
/// `'f16'`; `aspect`: `None` (the config's), `'anyres'` or `'pad'`;
/// `max_pixels`: the largest image accepted. One model runs one request at a
/// time; other threads wait for it with the GIL released.
#[pyclass(module = "blip3", frozen)]
struct Model {
    shared: Arc<Shared>,
}

/// The sampling keywords shared by `generate` and `chat`.
struct Sampling {
    max_new_tokens: Option<usize>,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    repetition_penalty: f32,
    seed: u64,
    ignore_eos: bool,
}

impl Sampling {
    fn params(&self, py: Python<'_>, completion: bool) -> PyResult<GenerationParams> {
        let sampling = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        };
        sampling.validate().map_err(|m| request_error(py, m))?;
        Ok(GenerationParams {
            // None: up to the context (the engine caps it there).
            max_new_tokens: self.max_new_tokens.unwrap_or(usize::MAX),
            sampling,
            top_logprobs: 0,
            completion,
            ignore_eos: self.ignore_eos,
        })
    }
}

#[pymethods]
impl Model {
    /// Loads a model folder or a Hugging Face Hub id (`owner/name[@revision]`,
    /// through the standard HF cache).
    #[new]
    #[pyo3(signature = (model, *, dtype = "auto", quantize = None, threads = None, kv_cache = "auto", aspect = None, max_pixels = DEFAULT_MAX_PIXELS))]
    #[pyo3(
        text_signature = "(model, *, dtype='auto', quantize=None, threads=None, kv_cache='auto', aspect=None, max_pixels=89478485)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        dtype: &str,
        quantize: Option<&str>,
        threads: Option<usize>,
        kv_cache: &str,
        aspect: Option<&str>,
        max_pixels: u64,
    ) -> PyResult<Self> {
        let options = PipelineOptions {
            weight_dtype: match dtype {
                "auto" => WeightDtype::AsStored,
                "f32" => WeightDtype::F32,
                "bf16" => WeightDtype::Bf16,
                other => return Err(choice_error("dtype", other, "'auto', 'f32', 'bf16'")),
            },
            quantization: match quantize {
                None => None,
                Some("q8_0") => Some(Quantization::Q8_0),
                Some("q4_0") => Some(Quantization::Q4_0),
                Some("q4_k") => Some(Quantization::Q4K),
                Some(other) => {
                    return Err(choice_error(
                        "quantize",
                        other,
                        "None, 'q8_0', 'q4_0', 'q4_k'",
                    ))
                }
            },
            kv_cache: match kv_cache {
                "auto" => None,
                "f32" => Some(KvPrecision::F32),
                "f16" => Some(KvPrecision::F16),
                other => return Err(choice_error("kv_cache", other, "'auto', 'f32', 'f16'")),
            },
            aspect: match aspect {
                None => None,
                Some("anyres") => Some(AspectMode::Anyres),
                Some("pad") => Some(AspectMode::Pad),
                Some(other) => return Err(choice_error("aspect", other, "None, 'anyres', 'pad'")),
            },
            max_pixels,
            ..Default::default()
        };
        if let Some(n) = threads {
            set_threads(py, n)?;
        }
        // As the CLI: keep large freed buffers for the next layer instead of
        // returning them to the system (`BLIP3_MALLOC=default` opts out).
        if std::env::var("BLIP3_MALLOC").as_deref() != Ok("default") {
            blip3_kernels::allocator::retain_freed_memory();
        }
        let spec = model.to_string_lossy().into_owned();
        let loaded = py.detach(move || -> Result<Shared, Failure> {
            let start = Instant::now();
            let config = blip3_hub::HubConfig::from_env();
            let dir = blip3_hub::resolve(&spec, &config, &mut StderrProgress)
                .map_err(|e| Failure::Other(format!("resolving model {spec}: {e}")))?;
            let pipeline = Pipeline::load(&dir, &options).map_err(|e| {
                Failure::Other(format!("loading model folder {}: {e}", dir.display()))
            })?;
            Ok(Shared {
                family: pipeline.family(),
                max_pixels: pipeline.max_pixels(),
                pipeline: Mutex::new(pipeline),
                path: dir,
                load_s: start.elapsed().as_secs_f64(),
            })
        });
        Ok(Self {
            shared: Arc::new(loaded.map_err(|f| f.into_pyerr(py))?),
        })
    }

    /// The model family: `"blip3-r1"` or `"xgenmm-v15"`.
    #[getter]
    fn family(&self) -> &'static str {
        self.shared.family.name()
    }

    /// The local model folder (a Hub id resolved to its snapshot).
    #[getter]
    fn path(&self) -> PathBuf {
        self.shared.path.clone()
    }

    /// Seconds spent resolving and loading the model.
    #[getter]
    fn load_s(&self) -> f64 {
        self.shared.load_s
    }

    fn __repr__(&self) -> String {
        format!(
            "blip3.Model({:?}, family={:?})",
            self.shared.path.display().to_string(),
            self.shared.family.name()
        )
    }

    /// Answers `prompt` about `images`, as `blip3 generate` does.
    ///
    /// `images`: one image or a list (paths, encoded bytes, PIL images or
    /// HxWx3 uint8 numpy arrays). The prompt is the family's chat frame
    /// (optional `system` text) with one image marker per image; with
    /// `raw_prompt=True` it is sent as is, one `<image>` per image (base
    /// models), with the completion stop rule. `temperature=0` is greedy;
    /// sampling is reproducible from `seed`; `max_new_tokens=None` runs up to
    /// the context; `ignore_eos` generates past stop ids. Returns a
    /// `Generation`, or with `stream=True` a `TextStream` of text pieces.
    #[pyo3(signature = (images = None, prompt = DEFAULT_QUESTION.to_string(), *, system = None, raw_prompt = false, max_new_tokens = Some(768), temperature = 0.0, top_k = 0, top_p = 1.0, repetition_penalty = 1.0, seed = 0, ignore_eos = false, stream = false))]
    #[pyo3(
        text_signature = "(self, images=None, prompt='Describe this image.', *, system=None, raw_prompt=False, max_new_tokens=768, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=0, ignore_eos=False, stream=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        images: Option<&Bound<'_, PyAny>>,
        prompt: String,
        system: Option<String>,
        raw_prompt: bool,
        max_new_tokens: Option<usize>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        repetition_penalty: f32,
        seed: u64,
        ignore_eos: bool,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let sampling = Sampling {
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            seed,
            ignore_eos,
        };
        let job = Job {
            images: images::sources(images)?,
            prompt: if raw_prompt {
                PromptSpec::Raw(prompt)
            } else {
                PromptSpec::Question {
                    question: prompt,
                    system,
                }
            },
            params: sampling.params(py, raw_prompt)?,
            capture: false,
        };
        self.answer(py, job, stream)
    }

    /// Answers OpenAI-style chat `messages` with the prompt the server's
    /// `/v1/chat/completions` builds.
    ///
    /// Roles: `system`/`developer`, `user`, `assistant` (the last one
    /// `user`). Content: a string, or parts `{"type": "text", "text": ...}`,
    /// `{"type": "image_url", "image_url": {"url": ...}}` (a `data:` or
    /// `file://` URL, or a local path) and `{"type": "image", "image": ...}`
    /// (any image `generate` takes). Messages' text stays plain text. The
    /// sampling keywords are `generate`'s; returns a `Generation`, or with
    /// `stream=True` a `TextStream`.
    #[pyo3(signature = (messages, *, max_new_tokens = Some(768), temperature = 0.0, top_k = 0, top_p = 1.0, repetition_penalty = 1.0, seed = 0, ignore_eos = false, stream = false))]
    #[pyo3(
        text_signature = "(self, messages, *, max_new_tokens=768, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=0, ignore_eos=False, stream=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn chat(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        max_new_tokens: Option<usize>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        repetition_penalty: f32,
        seed: u64,
        ignore_eos: bool,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let sampling = Sampling {
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            seed,
            ignore_eos,
        };
        let params = sampling.params(py, false)?;
        let input = chat::read_messages(messages)?;
        let (prompt, images) = input
            .prompt(self.shared.family)
            .map_err(|f| f.into_pyerr(py))?;
        let job = Job {
            images,
            prompt: PromptSpec::Marked(prompt),
            params,
            capture: false,
        };
        self.answer(py, job, stream)
    }

    /// The vision tokens of `images` (the perceiver output spliced at each
    /// `<image>`): one float32 array `[crops·128, hidden]` per image, under
    /// the chat prompt of `prompt` (r-v1 instruct's perceiver reads it).
    #[pyo3(signature = (images, prompt = DEFAULT_QUESTION.to_string(), *, system = None))]
    #[pyo3(text_signature = "(self, images, prompt='Describe this image.', *, system=None)")]
    fn encode_images(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        prompt: String,
        system: Option<String>,
    ) -> PyResult<Py<PyList>> {
        let sources = images::sources(Some(images))?;
        let shared = Arc::clone(&self.shared);
        let arrays = py
            .detach(move || -> Result<Vec<HostArray>, Failure> {
                let images = decode_all(sources, shared.max_pixels)?;
                let prompt = marked_chat_prompt(
                    &prompt,
                    system.as_deref(),
                    shared.family.chat_image_marker(),
                    images.len(),
                );
                let pipeline = shared.lock();
                let ids = pipeline.tokenizer().encode_marked(&prompt, true);
                pipeline.check_image_count(&ids, images.len())?;
                let encoded = images
                    .iter()
                    .map(|i| pipeline.encode_image(&pipeline.preprocess(i)))
                    .collect::<Result<Vec<EncodedImage>, _>>()?;
                let tokens = pipeline.image_tokens(&ids, &encoded)?;
                tokens
                    .iter()
                    .map(|t| {
                        let values = t
                            .to_dtype(candle_core::DType::F32)
                            .and_then(|t| t.flatten_all())
                            .and_then(|t| t.to_vec1::<f32>())
                            .map_err(|e| Failure::Other(e.to_string()))?;
                        Ok((t.dims().to_vec(), values))
                    })
                    .collect()
            })
            .map_err(|f| f.into_pyerr(py))?;
        let list = PyList::empty(py);
        for (shape, values) in arrays {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            list.append(numpy_array(py, &bytes, "<f4", &shape)?)?;
        }
        Ok(list.unbind())
    }

    /// The stage tensors of one greedy run, as `blip3 dump` writes them
    /// (`input_ids`, `pixel_values`, `vision_features`, `vision_tokens`,
    /// `inputs_embeds`, `last_logits`, `generated_ids`, `image_token_counts`,
    /// `debug.vit_tokens`, and `vision_attn_mask` / `debug.text_embeds`
    /// where the family has them): a dict of numpy arrays.
    #[pyo3(signature = (images, prompt, *, system = None, raw_prompt = false, max_new_tokens = 8))]
    fn dump(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        prompt: String,
        system: Option<String>,
        raw_prompt: bool,
        max_new_tokens: usize,
    ) -> PyResult<Py<PyDict>> {
        let mut params = GenerationParams::greedy(max_new_tokens);
        params.completion = raw_prompt;
        let job = Job {
            images: images::sources(Some(images))?,
            prompt: if raw_prompt {
                PromptSpec::Raw(prompt)
            } else {
                PromptSpec::Question {
                    question: prompt,
                    system,
                }
            },
            params,
            capture: true,
        };
        let output = self.run_here(py, job)?;
        let tensors = dump_tensors(&output).map_err(|e| Failure::from(e).into_pyerr(py))?;
        let dict = PyDict::new(py);
        for (name, t) in tensors {
            let dtype = match t.dtype {
                Dtype::F32 => "<f4",
                Dtype::I64 => "<i8",
                other => {
                    return Err(blip3_error(
                        py,
                        format!("tensor {name} has unexpected dtype {other:?}"),
                    ))
                }
            };
            dict.set_item(name, numpy_array(py, &t.bytes, dtype, &t.shape)?)?;
        }
        Ok(dict.unbind())
    }
}

impl Model {
    /// Runs `job` here (non-streaming, a `Generation`) or on its own thread
    /// (streaming, a `TextStream`).
    fn answer(&self, py: Python<'_>, job: Job, stream: bool) -> PyResult<Py<PyAny>> {
        if stream {
            let s = TextStream::start(Arc::clone(&self.shared), job)?;
            return Ok(Py::new(py, s)?.into_any());
        }
        let output = self.run_here(py, job)?;
        Ok(Py::new(py, Generation::new(py, &output)?)?.into_any())
    }

    /// Runs `job` on this thread with the GIL released, taking it back
    /// between tokens (at most every 20 ms) to check for signals: Ctrl-C
    /// stops the run and raises `KeyboardInterrupt`.
    fn run_here(&self, py: Python<'_>, job: Job) -> PyResult<RunOutput> {
        let shared = Arc::clone(&self.shared);
        let result = py.detach(move || {
            let mut interrupted: Option<PyErr> = None;
            let mut checked = Instant::now();
            let result = job.run(&shared, &mut |_, _| {
                // Taking the GIL can wait out a busy Python thread's switch
                // interval (5 ms): too long to pay at every token of a small model.
                if checked.elapsed() < SIGNAL_CHECK_INTERVAL {
                    return ControlFlow::Continue(());
                }
                checked = Instant::now();
                match Python::attach(|py| py.check_signals()) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        interrupted = Some(e);
                        ControlFlow::Break(())
                    }
                }
            });
            match (result, interrupted) {
                (_, Some(e)) => Err(Failure::Python(e)),
                (r, None) => r,
            }
        });
        result.map_err(|f| f.into_pyerr(py))
    }
}

/// Hub download progress: one line per file on stderr (no terminal drawing:
/// notebooks and logs show it as is).
struct StderrProgress;

impl blip3_hub::Progress for StderrProgress {
    fn start(&mut self, file: &str, size: u64, done: u64) {
        eprintln!(
            "blip3: downloading {file} ({:.1} MB{})",
            size as f64 / 1e6,
            if done > 0 { ", resuming" } else { "" }
        );
    }
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// An F32 array's shape and values, taken off the engine's tensors without
/// the GIL.
type HostArray = (Vec<usize>, Vec<f32>);

/// `name` is not one of `allowed`.
fn choice_error(name: &str, value: &str, allowed: &str) -> PyErr {
    PyValueError::new_err(format!("{name}={value:?}: expected one of {allowed}"))
}

/// Sizes the compute thread pool. It is built once per process (by the first
/// model's first computation), so a later different count only warns.
fn set_threads(py: Python<'_>, n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    if rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .is_err()
        && rayon::current_num_threads() != n
    {
        let message = std::ffi::CString::new(format!(
            "threads={n} ignored: the compute thread pool already runs {} threads \
             (it is sized once per process, by the first Model)",
            rayon::current_num_threads()
        ))
        .unwrap_or_default();
        let category = py.get_type::<PyRuntimeWarning>();
        PyErr::warn(py, &category, &message, 1)?;
    }
    Ok(())
}

/// A writable numpy array over a copy of `bytes` (little-endian `dtype`).
fn numpy_array<'py>(
    py: Python<'py>,
    bytes: &[u8],
    dtype: &str,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let numpy = py.import("numpy")?;
    // A bytearray, not bytes: numpy arrays over bytes are read-only.
    let buffer = PyByteArray::new(py, bytes);
    numpy
        .call_method1("frombuffer", (buffer, dtype))?
        .call_method1("reshape", (shape.to_vec(),))
}

/// The result of one generation.
#[pyclass(module = "blip3", frozen, get_all)]
struct Generation {
    /// The answer (special tokens skipped, cut at `<|end|>`).
    text: String,
    /// Generated token ids, the stop id included (as `blip3 generate --json`).
    ids: Vec<u32>,
    /// Why generation stopped: `end_<id>`, `eos_<id>` or `max_new_tokens`.
    stop_reason: String,
    /// Prompt token ids before the images were spliced in (BOS included).
    input_tokens: usize,
    /// Seconds per stage and token counts (the keys of `generate --json`'s
    /// `timings`, without `load_s`).
    timings: Py<PyDict>,
    /// How each image was cut: `image_size`, `best_resolution`, `grid`,
    /// `num_crops`.
    images: Py<PyList>,
    /// Visual tokens spliced per image.
    image_token_counts: Vec<usize>,
}

impl Generation {
    fn new(py: Python<'_>, output: &RunOutput) -> PyResult<Self> {
        let t = &output.timings;
        let timings = PyDict::new(py);
        for (k, v) in [
            ("preprocess_s", t.preprocess_s),
            ("vision_encode_s", t.vision_encode_s),
            ("resampler_s", t.resampler_s),
            ("prefill_s", t.prefill_s),
            ("ttft_s", t.ttft_s),
            ("decode_s", t.decode_s),
            (
                "prefill_tokens_per_s",
                t.prefill_tokens as f64 / t.prefill_s.max(1e-9),
            ),
            (
                "decode_tokens_per_s",
                t.generated_tokens.saturating_sub(1) as f64 / t.decode_s.max(1e-9),
            ),
        ] {
            timings.set_item(k, v)?;
        }
        timings.set_item("prefill_tokens", t.prefill_tokens)?;
        timings.set_item("generated_tokens", t.generated_tokens)?;
        let images = PyList::empty(py);
        for info in &output.images {
            let d = PyDict::new(py);
            d.set_item("image_size", info.image_size)?;
            d.set_item("best_resolution", info.best_resolution)?;
            d.set_item("grid", info.grid)?;
            d.set_item("num_crops", info.num_crops)?;
            images.append(d)?;
        }
        Ok(Self {
            text: output.text.clone(),
            ids: output.generated_ids.clone(),
            stop_reason: output.stop_reason.label(),
            input_tokens: output.input_ids.len(),
            timings: timings.unbind(),
            images: images.unbind(),
            image_token_counts: output.image_token_counts.clone(),
        })
    }
}

#[pymethods]
impl Generation {
    fn __repr__(&self) -> String {
        format!(
            "Generation(text={:?}, stop_reason={:?}, ids=<{} ids>)",
            self.text,
            self.stop_reason,
            self.ids.len()
        )
    }

    fn __str__(&self) -> String {
        self.text.clone()
    }
}

#[pymodule]
fn _blip3(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Generation>()?;
    m.add_class::<TextStream>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
