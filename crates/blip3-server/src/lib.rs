//! `blip3 serve`: an OpenAI-compatible HTTP server over the BLIP-3 engine.
//!
//! Layering (as in mistral.rs): this crate speaks HTTP and the OpenAI wire
//! format ([`api`], [`media`], [`error`]) and nothing else; it hands each
//! request to `blip3-engine`'s [`Engine`] (tokenizing, checks, image cache,
//! scheduling, batching, detokenisation) and never sees a tensor.
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

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use blip3_engine::serving::{
    Engine, EngineConfig, EngineRequest, Event, ImageInput, Metrics, Timings, TokenBudget,
    TokenLogprob, Usage,
};
use blip3_engine::Pipeline;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::api::{
    legacy_logprobs, logprob_entry, ChatImages, Detail, Endpoint, ImageRef, LegacyToken, Request,
};
use crate::error::ApiError;
use crate::media::MediaPolicy;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name reported by `/v1/models` and echoed in answers.
    pub model_name: String,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Media permissions and image size cap.
    pub media: MediaPolicy,
    /// Most images in one request (over it: 400 `too_many_images`).
    pub max_images: usize,
    /// The engine's queue (a full one answers 429), batching, admission,
    /// pixel limit and image cache.
    pub engine: EngineConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_name: "blip3".into(),
            max_request_bytes: 32 << 20,
            media: MediaPolicy::default(),
            max_images: 8,
            engine: EngineConfig::default(),
        }
    }
}

/// Shared by the handlers.
pub struct AppState {
    engine: Engine,
    config: ServerConfig,
    started: u64,
}

/// A running engine behind the HTTP routes.
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// Starts the engine for `pipeline`.
    pub fn start(pipeline: Pipeline, config: ServerConfig) -> std::io::Result<Self> {
        let engine = Engine::start(pipeline, config.engine.clone())?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            state: Arc::new(AppState {
                engine,
                config,
                started,
            }),
        })
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let limit = self.state.config.max_request_bytes;
        harden(
            Router::new()
                .route("/v1/chat/completions", post(chat_completions))
                .route("/v1/completions", post(completions))
                .route("/v1/models", get(models))
                .route("/health", get(health))
                .route("/metrics", get(metrics_text))
                .fallback(not_found)
                .layer(DefaultBodyLimit::max(limit))
                .with_state(self.state.clone()),
        )
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
        self.state.engine.stop();
    }
}

/// What every route gets: a panic in a handler becomes a 500 in OpenAI's
/// error shape, naming nothing of the panic (its message may hold request
/// data or internals), and the server goes on serving.
pub fn harden(router: Router) -> Router {
    router.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |_panic: Box<dyn std::any::Any + Send + 'static>| {
            tracing::error!("a request handler panicked");
            ApiError::internal("internal error").into_response()
        },
    ))
}

/// The request body, or the error for a body over the size limit (413)
/// or one that could not be read, in OpenAI's error shape.
fn body_or_error(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                format!("the request body exceeds the limit of {limit} bytes"),
                None,
            )
            .with_code("request_too_large")
        } else {
            ApiError::invalid("the request body could not be read", None)
        }
    })
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
    let m = state.engine.metrics();
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
        state.engine.metrics().render(),
    )
        .into_response()
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    handle(&state, body, Endpoint::Chat).await
}

async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    handle(&state, body, Endpoint::Completion).await
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    endpoint: Endpoint,
) -> Response {
    let metrics = state.engine.metrics();
    Metrics::add(&metrics.requests, 1);
    let answer = match body_or_error(body, state.config.max_request_bytes) {
        Ok(body) => accept(state, &body, endpoint).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(response) => response,
        Err(e) => {
            if e.status == StatusCode::TOO_MANY_REQUESTS {
                Metrics::add(&metrics.rejected, 1);
            } else {
                Metrics::add(&metrics.errors, 1);
            }
            e.into_response()
        }
    }
}

/// Validates a request of either endpoint, fetches its images and submits
/// it to the engine; then answers (JSON or server-sent events) in the
/// endpoint's format.
async fn accept(
    state: &Arc<AppState>,
    body: &[u8],
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let info = state.engine.model_info();
    let request = match endpoint {
        // The model family decides how an image is marked in a chat turn.
        Endpoint::Chat => api::parse_chat(body, ChatImages::of(info.family))?,
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
    let images = fetch_images(state, &request.images).await?;
    let max_tokens = match (request.max_tokens, endpoint) {
        (Some(max), _) => TokenBudget::Exactly(max),
        (None, Endpoint::Chat) => TokenBudget::UntilContext,
        (None, Endpoint::Completion) => TokenBudget::AtMost(api::COMPLETION_DEFAULT_MAX_TOKENS),
    };
    let submission = EngineRequest {
        prompt: request.prompt.clone(),
        images,
        max_tokens,
        sampling: request.sampling.clone(),
        seeded: request.seeded,
        n: request.n,
        stop: request.stop.clone(),
        logprobs: request.logprobs,
        top_logprobs: request.top_logprobs,
        // Raw prompts stop on <|endoftext|> / <|endofchunk|>, chat on <|end|>.
        completion: endpoint == Endpoint::Completion,
        ignore_eos: request.ignore_eos,
        param,
    };
    // Tokenizing and image preprocessing block: off the async threads, so a
    // long prompt or a large image does not stall other requests.
    let submitted = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.engine.submit(submission))
            .await
            .map_err(|_| ApiError::internal("internal error"))?
    };
    let rx = submitted.map_err(ApiError::from)?.events;
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

/// Reads each image's bytes under the media policy (off the async threads).
/// Errors name the content part at fault when there are several.
async fn fetch_images(
    state: &Arc<AppState>,
    images: &[ImageRef],
) -> Result<Vec<ImageInput>, ApiError> {
    let mut fetched = Vec::with_capacity(images.len());
    for image_ref in images {
        let policy = state.config.media.clone();
        let url = image_ref.url.clone();
        // A panic in a fetch (none is known) answers 500 without its text.
        let bytes = tokio::task::spawn_blocking(move || media::fetch(&url, &policy))
            .await
            .map_err(|_| ApiError::internal("internal error"))?
            .map_err(|mut e| {
                if images.len() > 1 {
                    e.message = format!("{}: {}", image_ref.at, e.message);
                }
                e
            })?;
        fetched.push(ImageInput {
            bytes,
            global_view_only: image_ref.detail == Detail::Low,
            at: image_ref.at.clone(),
        });
    }
    Ok(fetched)
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

fn usage_json(usage: &Usage, timings: &Timings) -> Value {
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
    mut rx: UnboundedReceiver<Event>,
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
                ..
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
            Event::Error(e) => return Err(e.into()),
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
    rx: UnboundedReceiver<Event>,
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
                ..
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
            Event::Error(e) => SseEvent::default().data(ApiError::from(e).body().to_string()),
        };
        Ok::<_, Infallible>(ev)
    });
    let done = tokio_stream::once(Ok::<_, Infallible>(SseEvent::default().data("[DONE]")));
    Sse::new(events.chain(done))
        .keep_alive(KeepAlive::default())
        .into_response()
}
