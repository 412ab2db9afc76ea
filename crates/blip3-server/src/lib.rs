//! `blip3 serve`: an OpenAI-compatible HTTP server over the BLIP-3 engine.
//!
//! Layering (as in mistral.rs): this crate speaks HTTP and the OpenAI wire
//! format ([`api`], [`media`], [`error`]); [`scheduler`] is the engine loop
//! (continuous batching, per-request KV caches, cancellation); the model
//! pipeline lives in `blip3-engine`.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `GET /v1/models`, `GET /health`, `GET /metrics`.
//!
//! A request may carry several images (`image_url` parts, up to
//! [`ServerConfig::max_images`]); each is cached and encoded on its own. In a
//! chat request each becomes the loaded family's image marker, placed as the
//! family wants ([`api::ChatImages::of`]: r-v1 leads each message with its
//! markers, v1.5 keeps them where the parts stand). In a completion request
//! (a raw prompt, e.g. a base model's few-shot prompt) each becomes a bare
//! `<image>` where its part stands, and the completion stop rule applies.
//! Both endpoints share everything after parsing: the model check, the image
//! cap and count check, media fetching, the image cache, the context check,
//! the scheduler and the metrics.

pub mod api;
pub mod error;
pub mod media;
pub mod metrics;
pub mod scheduler;
pub mod vision_cache;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use blip3_engine::{GenerationParams, Pipeline};
use blip3_preprocess::AspectMode;
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::api::{
    legacy_logprobs, logprob_entry, ChatImages, Detail, Endpoint, ImageRef, LegacyToken, Request,
};
use crate::error::ApiError;
use crate::media::MediaPolicy;
use crate::metrics::Metrics;
use crate::scheduler::{Event, Job, JobImage, SchedulerConfig, TokenLogprob};
use crate::vision_cache::VisionCache;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name reported by `/v1/models` and echoed in answers.
    pub model_name: String,
    /// Identifies the weights for the image cache (e.g. a hash of config files).
    pub model_revision: String,
    /// Requests waiting beyond the running ones before 429.
    pub queue_size: usize,
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Media permissions and image size cap.
    pub media: MediaPolicy,
    /// Largest decoded image, in pixels (decompression-bomb guard).
    pub max_pixels: u64,
    /// RAM budget of the image cache.
    pub vision_cache_bytes: usize,
    /// Disk tier of the image cache.
    pub vision_cache_dir: Option<PathBuf>,
    /// Most images in one request (over it: 400 `too_many_images`).
    pub max_images: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_name: "blip3".into(),
            model_revision: String::new(),
            queue_size: 64,
            max_batch: 8,
            max_request_bytes: 32 << 20,
            media: MediaPolicy {
                media_root: None,
                max_image_bytes: 20 << 20,
                allow_remote: false,
                remote_timeout: std::time::Duration::from_secs(10),
            },
            max_pixels: blip3_preprocess::decode::DEFAULT_MAX_PIXELS,
            vision_cache_bytes: 512 << 20,
            vision_cache_dir: None,
            max_images: 8,
        }
    }
}

/// Shared by the handlers.
pub struct AppState {
    pipeline: Arc<Pipeline>,
    config: ServerConfig,
    jobs: Mutex<Option<SyncSender<Job>>>,
    cache: Arc<Mutex<VisionCache>>,
    metrics: Arc<Metrics>,
    started: u64,
}

/// A running engine: the HTTP router plus the engine thread behind it.
pub struct Server {
    state: Arc<AppState>,
    engine: std::thread::JoinHandle<()>,
}

impl Server {
    /// Starts the engine thread for `pipeline`.
    pub fn start(pipeline: Pipeline, config: ServerConfig) -> std::io::Result<Self> {
        let pipeline = Arc::new(pipeline);
        let cache = Arc::new(Mutex::new(VisionCache::new(
            config.vision_cache_bytes,
            config.vision_cache_dir.clone(),
        )?));
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = sync_channel(config.queue_size.max(1));
        let engine = {
            let (pipeline, cache, metrics) = (pipeline.clone(), cache.clone(), metrics.clone());
            let sched = SchedulerConfig {
                max_batch: config.max_batch,
            };
            std::thread::Builder::new()
                .name("blip3-engine".into())
                .spawn(move || scheduler::run(pipeline, rx, cache, metrics, sched))?
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            state: Arc::new(AppState {
                pipeline,
                config,
                jobs: Mutex::new(Some(tx)),
                cache,
                metrics,
                started,
            }),
            engine,
        })
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let limit = self.state.config.max_request_bytes;
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/completions", post(completions))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .route("/metrics", get(metrics_text))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(limit))
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then lets running
    /// requests finish and stops the engine thread.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        self.stop();
        Ok(())
    }

    /// Refuses new requests and waits for the engine thread to drain.
    pub fn stop(self) {
        if let Ok(mut jobs) = self.state.jobs.lock() {
            jobs.take();
        }
        let _ = self.engine.join();
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such route".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let m = &state.metrics;
    Json(json!({
        "status": "ok",
        "model": state.config.model_name,
        "queue_depth": m.queue_depth.load(Ordering::Relaxed),
        "active_sequences": m.active_sequences.load(Ordering::Relaxed),
    }))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.config.model_name,
            "object": "model",
            "created": state.started,
            "owned_by": "blip3-rs",
        }]
    }))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(&state, &body, Endpoint::Chat).await
}

async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(&state, &body, Endpoint::Completion).await
}

async fn handle(state: &Arc<AppState>, body: &[u8], endpoint: Endpoint) -> Response {
    Metrics::add(&state.metrics.requests, 1);
    match accept(state, body, endpoint).await {
        Ok(response) => response,
        Err(e) => {
            if e.status == StatusCode::TOO_MANY_REQUESTS {
                Metrics::add(&state.metrics.rejected, 1);
            } else {
                Metrics::add(&state.metrics.errors, 1);
            }
            e.into_response()
        }
    }
}

/// Validates a request of either endpoint, prepares its images and queues
/// it; then answers (JSON or server-sent events) in the endpoint's format.
async fn accept(
    state: &Arc<AppState>,
    body: &[u8],
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let pipeline = state.pipeline.clone();
    let request = match endpoint {
        // The model family decides how an image is marked in a chat turn.
        Endpoint::Chat => api::parse_chat(body, ChatImages::of(pipeline.family()))?,
        Endpoint::Completion => api::parse_completion(body)?,
    };
    let param = endpoint.prompt_param();
    if let Some(name) = &request.model {
        if !name.is_empty() && name != &state.config.model_name {
            return Err(ApiError::not_found(
                format!(
                    "model '{name}' is not served here (this server serves '{}')",
                    state.config.model_name
                ),
                Some("model"),
            ));
        }
    }
    let max_images = state.config.max_images;
    if request.images.len() > max_images {
        return Err(ApiError::invalid(
            format!(
                "{} images were given; this server takes at most {max_images} per request",
                request.images.len()
            ),
            Some(param),
        )
        .with_code("too_many_images"));
    }
    let input_ids = pipeline.tokenizer().encode(&request.prompt, true);
    check_image_count(&pipeline, &input_ids, request.images.len(), endpoint)?;
    let images = prepare_images(state, &request.images, endpoint).await?;
    // Context check: each image's `<image>` token becomes crops × latents
    // positions, known once the crop counts are.
    let latents = pipeline
        .model()
        .config()
        .vision_tokenizer_config
        .num_vis_tokens;
    let visual: usize = images.iter().map(|i| i.num_crops() * latents).sum();
    let positions = (input_ids.len() + visual).saturating_sub(images.len());
    let context = pipeline.model().lm().config().max_position_embeddings;
    if positions >= context {
        return Err(ApiError::invalid(
            format!("the prompt takes {positions} positions (text + visual tokens); the context is {context}"),
            Some(param),
        )
        .with_code("context_length_exceeded"));
    }
    let room = context - positions;
    if let Some(max) = request.max_tokens {
        if max > room {
            return Err(ApiError::invalid(
                format!("max_tokens {max} + the prompt's {positions} positions exceed the {context}-token context"),
                Some("max_tokens"),
            )
            .with_code("context_length_exceeded"));
        }
    }
    let mut sampling = request.sampling.clone();
    if !request.seeded {
        sampling.seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    let max_new_tokens = match (request.max_tokens, endpoint) {
        (Some(max), _) => max,
        (None, Endpoint::Chat) => room,
        (None, Endpoint::Completion) => api::COMPLETION_DEFAULT_MAX_TOKENS.min(room),
    };
    let params = GenerationParams {
        max_new_tokens,
        sampling,
        top_logprobs: request.top_logprobs,
        // Raw prompts stop on <|endoftext|> / <|endofchunk|>, chat on <|end|>.
        completion: endpoint == Endpoint::Completion,
    };
    let (tx, rx) = unbounded_channel();
    let job = Job {
        input_ids,
        images,
        params,
        n: request.n,
        stop: request.stop.clone(),
        logprobs: request.logprobs,
        events: tx,
        accepted: Instant::now(),
        param,
    };
    {
        let guard = state
            .jobs
            .lock()
            .map_err(|_| ApiError::internal("job queue poisoned"))?;
        let Some(jobs) = guard.as_ref() else {
            return Err(ApiError::unavailable("the server is shutting down"));
        };
        state.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                state.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return Err(ApiError::busy(format!(
                    "the request queue is full ({} waiting); retry later",
                    state.config.queue_size
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                state.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return Err(ApiError::unavailable("the engine has stopped"));
            }
        }
    }
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    let id = format!("{prefix}-{:x}", fastrand_id());
    let model = state.config.model_name.clone();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if request.stream {
        Ok(stream_response(rx, request, id, model, created))
    } else {
        collect_response(rx, &request, id, model, created).await
    }
}

/// Checks that the prompt's `<image>` tokens match the images, before any
/// image is fetched. Text that reads `<image>` tokenizes to the image token,
/// so a user typing it would otherwise shift every image.
fn check_image_count(
    pipeline: &Pipeline,
    input_ids: &[u32],
    images: usize,
    endpoint: Endpoint,
) -> Result<(), ApiError> {
    let image_token = pipeline.image_token_id();
    let markers = input_ids.iter().filter(|&&id| id == image_token).count();
    let mismatch = |detail: String| {
        ApiError::invalid(
            format!("the prompt holds {markers} <image> token(s) for {images} image(s): {detail}"),
            Some(endpoint.prompt_param()),
        )
        .with_code("image_count_mismatch")
    };
    if markers != images {
        let hint = match endpoint {
            Endpoint::Chat => {
                "the text '<image>' is reserved for the image parts; remove it from text content"
            }
            Endpoint::Completion => {
                "each image_url part stands for one <image>; send the prompt as content parts \
                 and keep the text '<image>' out of the text parts"
            }
        };
        return Err(mismatch(hint.into()));
    }
    // The splice mode's own rule (e.g. first-image-only takes one image).
    pipeline
        .check_image_count(input_ids, images)
        .map_err(|e| mismatch(e.to_string()))
}

/// Prepares each image in order: reads its bytes, checks the cache, else
/// decodes and preprocesses it (off the async threads). Errors name the
/// content part at fault.
async fn prepare_images(
    state: &Arc<AppState>,
    images: &[ImageRef],
    endpoint: Endpoint,
) -> Result<Vec<JobImage>, ApiError> {
    let mut prepared = Vec::with_capacity(images.len());
    for image_ref in images {
        let image = prepare_image(state, image_ref, endpoint)
            .await
            .map_err(|mut e| {
                if images.len() > 1 {
                    e.message = format!("{}: {}", image_ref.at, e.message);
                }
                e
            })?;
        prepared.push(image);
    }
    Ok(prepared)
}

/// One image: from the cache, or decoded and preprocessed under its `detail`
/// (low: the global view alone; high/auto: the pipeline's aspect mode).
async fn prepare_image(
    state: &Arc<AppState>,
    image_ref: &ImageRef,
    endpoint: Endpoint,
) -> Result<JobImage, ApiError> {
    let policy = state.config.media.clone();
    let url = image_ref.url.clone();
    let bytes = tokio::task::spawn_blocking(move || media::fetch(&url, &policy))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let detail = image_ref.detail;
    let key = vision_cache::key(&bytes, detail.label(), &state.config.model_revision);
    let cached = state.cache.lock().ok().and_then(|mut c| c.get(&key));
    if let Some((encoded, tier)) = cached {
        Metrics::add(&state.metrics.cache_hits, 1);
        if tier == vision_cache::Tier::Disk {
            Metrics::add(&state.metrics.cache_disk_hits, 1);
        }
        return Ok(JobImage::Cached(encoded));
    }
    let pipeline = state.pipeline.clone();
    let max_pixels = state.config.max_pixels;
    let prepared = tokio::task::spawn_blocking(move || {
        let image = blip3_preprocess::decode::decode_bytes(&bytes, max_pixels)?;
        let aspect = match detail {
            Detail::Low => AspectMode::Pad,
            Detail::High => pipeline.aspect(),
        };
        Ok::<_, blip3_preprocess::PreprocessError>(pipeline.preprocess_with(&image, aspect))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| {
        ApiError::invalid(
            format!("cannot use the image: {e}"),
            Some(match endpoint {
                Endpoint::Chat => "messages.content.image_url",
                Endpoint::Completion => "prompt.image_url",
            }),
        )
        .with_code("invalid_image")
    })?;
    Ok(JobImage::Prepared {
        image: Box::new(prepared),
        key,
    })
}

fn fastrand_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    u128::from(h.finish()) << 64 | u128::from(h.finish().rotate_left(17))
}

#[derive(Default)]
struct ChoiceAcc {
    text: String,
    ids: Vec<u32>,
    logprobs: Vec<TokenLogprob>,
    finish: Option<&'static str>,
}

fn usage_json(usage: &scheduler::Usage, timings: &scheduler::Timings) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "image_tokens": usage.image_tokens},
        "timings": timings,
    })
}

fn legacy(tokens: &[TokenLogprob], offset: usize) -> Value {
    let tokens: Vec<LegacyToken<'_>> = tokens
        .iter()
        .map(|t| LegacyToken {
            token: &t.token,
            logprob: t.logprob,
            top: &t.top,
        })
        .collect();
    legacy_logprobs(&tokens, offset)
}

async fn collect_response(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    request: &Request,
    id: String,
    model: String,
    created: u64,
) -> Result<Response, ApiError> {
    let mut choices: Vec<ChoiceAcc> = (0..request.n).map(|_| ChoiceAcc::default()).collect();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Token {
                index,
                id,
                text,
                logprob,
            } => {
                if let Some(c) = choices.get_mut(index) {
                    c.text.push_str(&text);
                    c.ids.push(id);
                    c.logprobs.extend(logprob);
                }
            }
            Event::Finish { index, reason } => {
                if let Some(c) = choices.get_mut(index) {
                    c.finish = Some(reason);
                }
            }
            Event::Error(e) => return Err(e),
            Event::Done { usage, timings } => {
                let choices: Vec<Value> = choices
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let finish = c.finish.unwrap_or("length");
                        match request.endpoint {
                            Endpoint::Chat => json!({
                                "index": i,
                                "message": {"role": "assistant", "content": c.text},
                                "logprobs": if request.logprobs {
                                    json!({"content": c.logprobs.iter()
                                        .map(|lp| logprob_entry(&lp.token, lp.logprob, &lp.top))
                                        .collect::<Vec<_>>()})
                                } else {
                                    Value::Null
                                },
                                "finish_reason": finish,
                                "token_ids": c.ids,
                            }),
                            Endpoint::Completion => json!({
                                "text": c.text,
                                "index": i,
                                "logprobs": if request.logprobs {
                                    legacy(&c.logprobs, 0)
                                } else {
                                    Value::Null
                                },
                                "finish_reason": finish,
                                "token_ids": c.ids,
                            }),
                        }
                    })
                    .collect();
                let object = match request.endpoint {
                    Endpoint::Chat => "chat.completion",
                    Endpoint::Completion => "text_completion",
                };
                let body = json!({
                    "id": id,
                    "object": object,
                    "created": created,
                    "model": model,
                    "system_fingerprint": null,
                    "choices": choices,
                    "usage": usage_json(&usage, &timings),
                });
                return Ok(Json(body).into_response());
            }
        }
    }
    Err(ApiError::internal("the engine stopped before answering"))
}

fn stream_response(
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    request: Request,
    id: String,
    model: String,
    created: u64,
) -> Response {
    let n = request.n;
    let endpoint = request.endpoint;
    let logprobs = request.logprobs;
    let include_usage = request.include_usage;
    let object = match endpoint {
        Endpoint::Chat => "chat.completion.chunk",
        Endpoint::Completion => "text_completion",
    };
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": id,
            "object": object,
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        SseEvent::default().data(v.to_string())
    };
    let mut role_sent = vec![false; n];
    // Completions' logprobs: where each choice's next token starts.
    let mut offsets = vec![0usize; n];
    let events = UnboundedReceiverStream::new(rx).map(move |event| {
        let ev = match event {
            Event::Token {
                index,
                id,
                text,
                logprob,
            } => match endpoint {
                Endpoint::Chat => {
                    let mut delta = json!({"content": text});
                    if let Some(sent) = role_sent.get_mut(index) {
                        if !*sent {
                            delta["role"] = json!("assistant");
                            *sent = true;
                        }
                    }
                    let lp = match (logprobs, logprob) {
                        (true, Some(lp)) => {
                            json!({"content": [logprob_entry(&lp.token, lp.logprob, &lp.top)]})
                        }
                        _ => Value::Null,
                    };
                    chunk(
                        json!([{"index": index, "delta": delta, "logprobs": lp, "finish_reason": null, "token_ids": [id]}]),
                        None,
                    )
                }
                Endpoint::Completion => {
                    let lp = match (logprobs, logprob, offsets.get_mut(index)) {
                        (true, Some(lp), Some(offset)) => {
                            let v = legacy(std::slice::from_ref(&lp), *offset);
                            *offset += lp.token.len();
                            v
                        }
                        _ => Value::Null,
                    };
                    chunk(
                        json!([{"text": text, "index": index, "logprobs": lp, "finish_reason": null, "token_ids": [id]}]),
                        None,
                    )
                }
            },
            Event::Finish { index, reason } => match endpoint {
                Endpoint::Chat => chunk(
                    json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}]),
                    None,
                ),
                Endpoint::Completion => chunk(
                    json!([{"text": "", "index": index, "logprobs": null, "finish_reason": reason}]),
                    None,
                ),
            },
            Event::Done { usage, timings } => {
                if include_usage {
                    chunk(json!([]), Some(usage_json(&usage, &timings)))
                } else {
                    SseEvent::default().comment("done")
                }
            }
            Event::Error(e) => SseEvent::default().data(e.body().to_string()),
        };
        Ok::<_, Infallible>(ev)
    });
    let done = tokio_stream::once(Ok::<_, Infallible>(SseEvent::default().data("[DONE]")));
    Sse::new(events.chain(done))
        .keep_alive(KeepAlive::default())
        .into_response()
}
