//! The OpenAI wire formats: parsing a request body of
//! `/v1/chat/completions` or `/v1/completions` into one generation request
//! (with precise 4xx errors), and the response pieces.

use blip3_engine::prompt::{DEFAULT_SYSTEM, IMAGE_TOKEN};
use blip3_engine::{Family, SamplingParams};
use blip3_engine::{MarkedText, TextKind};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// `image_url.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Global view only: one crop, 128 visual tokens.
    Low,
    /// Full anyres tiling (`high` and `auto`).
    High,
}

impl Detail {
    /// Label used in cache keys and timings.
    pub fn label(self) -> &'static str {
        match self {
            Detail::Low => "low",
            Detail::High => "high",
        }
    }
}

/// The route a request came through: it decides the prompt format, the stop
/// rule, the defaults and the response objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`: the Phi-3 instruct chat frame.
    Chat,
    /// `POST /v1/completions`: a raw prompt (base models, few-shot), the
    /// completion stop rule.
    Completion,
}

impl Endpoint {
    /// The request field that holds the prompt (for error `param`s).
    pub fn prompt_param(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Completion => "prompt",
        }
    }
}

/// Where a chat message's image markers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Where each image part stands among the text parts (v1.5: VLMEvalKit
    /// interleaves images and text).
    Inline,
    /// All of a message's markers first, in order, then its text (r-v1:
    /// trained with `<image>\n` per image at the start of the user turn), so
    /// `[text, image]` and `[image, text]` give the same prompt.
    Leading,
}

/// How a chat turn marks its images: the loaded family's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatImages<'a> {
    /// The text of one image
    /// ([`Family::chat_image_marker`]: `"<image>\n"` for r-v1, `"<image> "`
    /// for v1.5).
    pub marker: &'a str,
    /// Where the markers go.
    pub placement: Placement,
}

impl ChatImages<'static> {
    /// The family's marker and placement: r-v1 leads each message with its
    /// markers, v1.5 keeps them inline.
    pub fn of(family: Family) -> Self {
        let placement = match family {
            Family::Blip3R1 => Placement::Leading,
            Family::XgenmmV15 => Placement::Inline,
        };
        Self {
            marker: family.chat_image_marker(),
            placement,
        }
    }
}

/// A request's image reference.
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// The URL as sent.
    pub url: String,
    /// Requested detail.
    pub detail: Detail,
    /// Where the part stands in the request (`messages[0].content[1]`,
    /// `prompt[2]`), for error messages.
    pub at: String,
}

/// A validated request of either endpoint.
#[derive(Debug, Clone)]
pub struct Request {
    /// The route it came through.
    pub endpoint: Endpoint,
    /// Model name echoed back.
    pub model: Option<String>,
    /// The prompt text: the templated chat prompt with one image marker per
    /// image, or the raw completion prompt with one `<image>` per image part.
    /// Clients' text is marked as such: in chat messages no control token is
    /// recognised, in a raw completion prompt no image marker.
    pub prompt: MarkedText,
    /// The images, in prompt (`<image>`) order.
    pub images: Vec<ImageRef>,
    /// `max_tokens` (or chat's `max_completion_tokens`); None: the
    /// endpoint's default (chat: up to the context; completions: 16).
    pub max_tokens: Option<usize>,
    /// Token selection.
    pub sampling: SamplingParams,
    /// Whether `seed` was given (otherwise each choice gets a fresh seed).
    pub seeded: bool,
    /// Choices to generate.
    pub n: usize,
    /// Stop strings (up to 4).
    pub stop: Vec<String>,
    /// Return log-probabilities.
    pub logprobs: bool,
    /// Alternatives per token (0–20).
    pub top_logprobs: usize,
    /// Server-sent events.
    pub stream: bool,
    /// A final usage chunk when streaming.
    pub include_usage: bool,
    /// Generate `max_tokens` past any stop token (vLLM's extension, for
    /// benchmarks).
    pub ignore_eos: bool,
}

/// OpenAI's default `max_tokens` on `/v1/completions`.
pub const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;

/// Fields that change the answer and that this server does not implement:
/// refused rather than silently ignored.
const REJECTED: [&str; 7] = [
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logit_bias",
    "audio",
];

/// The same for `/v1/completions` (`echo` and `best_of` are checked by value).
const REJECTED_COMPLETION: [&str; 2] = ["logit_bias", "suffix"];

/// Most choices per request.
pub const MAX_N: usize = 8;

/// Most alternatives per token (`top_logprobs`, completions' `logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

fn invalid(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid(message, Some(param))
}

fn unsupported(message: impl Into<String>, param: &str) -> ApiError {
    invalid(message, param).with_code("unsupported_parameter")
}

fn get_f32(body: &Value, field: &str) -> Result<Option<f32>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|v| v as f32)),
        Some(_) => Err(invalid(format!("'{field}' must be a number"), field)),
    }
}

fn get_uint(body: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("'{field}' must be a non-negative integer"), field)),
        Some(_) => Err(invalid(format!("'{field}' must be an integer"), field)),
    }
}

fn get_bool(body: &Value, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("'{field}' must be a boolean"), field)),
    }
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
    #[serde(default)]
    detail: Option<String>,
}

/// Parses a body into a JSON object and refuses the unsupported `fields`.
fn object(body: &[u8], rejected: &[&str]) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}"), None))?;
    if !body.is_object() {
        return Err(ApiError::invalid(
            "request body must be a JSON object",
            None,
        ));
    }
    for &field in rejected {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(
                format!("'{field}' is not supported by this server"),
                field,
            ));
        }
    }
    for field in ["frequency_penalty", "presence_penalty"] {
        if get_f32(&body, field)?.is_some_and(|v| v != 0.0) {
            return Err(unsupported(
                format!("'{field}' is not supported; use 'repetition_penalty'"),
                field,
            ));
        }
    }
    Ok(body)
}

/// Parses and validates a `/v1/chat/completions` body. `images` is the loaded
/// model family's marker and placement ([`ChatImages::of`]).
pub fn parse_chat(body: &[u8], images: ChatImages<'_>) -> Result<Request, ApiError> {
    let body = object(body, &REJECTED)?;
    let (prompt, image_refs) = template(body.get("messages"), images)?;
    let max_tokens = match get_uint(&body, "max_completion_tokens")? {
        Some(v) => Some(v),
        None => get_uint(&body, "max_tokens")?,
    };
    let logprobs = get_bool(&body, "logprobs")?.unwrap_or(false);
    let top_logprobs = get_uint(&body, "top_logprobs")?.unwrap_or(0) as usize;
    if top_logprobs > MAX_TOP_LOGPROBS {
        return Err(invalid(
            format!("'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}"),
            "top_logprobs",
        ));
    }
    if top_logprobs > 0 && !logprobs {
        return Err(invalid(
            "'top_logprobs' requires 'logprobs': true",
            "top_logprobs",
        ));
    }
    options(
        &body,
        Endpoint::Chat,
        prompt,
        image_refs,
        max_tokens,
        (logprobs, top_logprobs),
    )
}

/// Parses and validates a `/v1/completions` body (OpenAI's legacy
/// completions). `prompt` is one raw prompt: a string, a one-string array,
/// or an array of content parts like a chat message's, where each
/// `image_url` part becomes a bare `<image>` at its place and text parts are
/// joined verbatim (the base models' few-shot format:
/// `<image>Output:a cat<|endofchunk|><image>Output:`).
pub fn parse_completion(body: &[u8]) -> Result<Request, ApiError> {
    let body = object(body, &REJECTED_COMPLETION)?;
    if get_bool(&body, "echo")? == Some(true) {
        return Err(unsupported(
            "'echo' is not supported by this server (the answer never repeats the prompt)",
            "echo",
        ));
    }
    let (prompt, image_refs) = completion_prompt(body.get("prompt"))?;
    let max_tokens = get_uint(&body, "max_tokens")?;
    // Legacy logprobs: an integer, the number of alternatives per token.
    let logprobs = match body.get("logprobs") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if k as usize <= MAX_TOP_LOGPROBS => Some(k as usize),
            _ => {
                return Err(invalid(
                    format!("'logprobs' must be an integer between 0 and {MAX_TOP_LOGPROBS}"),
                    "logprobs",
                ))
            }
        },
        Some(_) => {
            return Err(invalid(
                format!(
                    "'logprobs' on /v1/completions is an integer between 0 and {MAX_TOP_LOGPROBS} \
                     (alternatives per token), not a boolean"
                ),
                "logprobs",
            ))
        }
    };
    let request = options(
        &body,
        Endpoint::Completion,
        prompt,
        image_refs,
        max_tokens,
        (logprobs.is_some(), logprobs.unwrap_or(0)),
    )?;
    if let Some(best_of) = get_uint(&body, "best_of")? {
        if best_of as usize != request.n {
            return Err(unsupported(
                "'best_of' is not supported (only best_of = n, the default)",
                "best_of",
            ));
        }
    }
    Ok(request)
}

/// The options both endpoints share: sampling, `n`, `stop`, streaming.
fn options(
    body: &Value,
    endpoint: Endpoint,
    prompt: MarkedText,
    images: Vec<ImageRef>,
    max_tokens: Option<u64>,
    (logprobs, top_logprobs): (bool, usize),
) -> Result<Request, ApiError> {
    let model = match body.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("'model' must be a string", "model")),
    };
    if max_tokens == Some(0) {
        return Err(invalid("'max_tokens' must be at least 1", "max_tokens"));
    }
    let temperature = get_f32(body, "temperature")?.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(invalid(
            "'temperature' must be between 0 and 2",
            "temperature",
        ));
    }
    let top_p = get_f32(body, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid("'top_p' must be in (0, 1]", "top_p"));
    }
    let top_k = match body.get("top_k") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(k) if k <= 0 => 0,
            Some(k) => k as usize,
            None => return Err(invalid("'top_k' must be an integer", "top_k")),
        },
    };
    let repetition_penalty = get_f32(body, "repetition_penalty")?.unwrap_or(1.0);
    if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
        return Err(invalid(
            "'repetition_penalty' must be positive",
            "repetition_penalty",
        ));
    }
    let seed = match body.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .map(|s| s as u64)
                .or_else(|| v.as_u64())
                .ok_or_else(|| invalid("'seed' must be an integer", "seed"))?,
        ),
    };
    let n = get_uint(body, "n")?.unwrap_or(1) as usize;
    if !(1..=MAX_N).contains(&n) {
        return Err(invalid(format!("'n' must be between 1 and {MAX_N}"), "n"));
    }
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("'stop' must be a string or an array of strings", "stop"))?,
        Some(_) => {
            return Err(invalid(
                "'stop' must be a string or an array of strings",
                "stop",
            ))
        }
    };
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(invalid(
            "'stop' takes up to 4 non-empty strings of at most 256 bytes",
            "stop",
        ));
    }
    let stream = get_bool(body, "stream")?.unwrap_or(false);
    let ignore_eos = get_bool(body, "ignore_eos")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if !stream {
                return Err(invalid(
                    "'stream_options' requires 'stream': true",
                    "stream_options",
                ));
            }
            o.get("include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }
        Some(_) => {
            return Err(invalid(
                "'stream_options' must be an object",
                "stream_options",
            ))
        }
    };
    Ok(Request {
        endpoint,
        model,
        prompt,
        images,
        max_tokens: max_tokens.map(|v| v as usize),
        sampling: SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            seed: seed.unwrap_or(0),
        },
        seeded: seed.is_some(),
        n,
        stop,
        logprobs,
        top_logprobs,
        stream,
        include_usage,
        ignore_eos,
    })
}

/// Builds the Phi-3 instruct prompt from the messages (spec §11.1): an
/// optional system message, alternating user/assistant turns, and the
/// assistant tag to answer after. Each image part of a user turn becomes the
/// family's marker, placed as the family wants (see [`content`]); the images
/// are returned in part order.
fn template(
    messages: Option<&Value>,
    images_format: ChatImages<'_>,
) -> Result<(MarkedText, Vec<ImageRef>), ApiError> {
    const P: &str = "messages";
    let Some(Value::Array(messages)) = messages else {
        return Err(invalid("'messages' must be a non-empty array", P));
    };
    if messages.is_empty() {
        return Err(invalid("'messages' must be a non-empty array", P));
    }
    let mut system = MarkedText::of(TextKind::Template, DEFAULT_SYSTEM);
    let mut turns = MarkedText::new();
    let mut images = Vec::new();
    let mut last_role = "";
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("messages[{i}].role must be a string"), P))?;
        let (text, imgs) = content(m.get("content"), i, images_format)?;
        match role {
            "system" | "developer" => {
                if !imgs.is_empty() {
                    return Err(invalid(
                        format!("messages[{i}]: a system message cannot hold an image"),
                        P,
                    ));
                }
                system = text;
            }
            "user" | "assistant" => {
                if role != "user" && !imgs.is_empty() {
                    return Err(invalid(
                        format!("messages[{i}]: only user messages can hold an image"),
                        P,
                    ));
                }
                let tag = if role == "user" {
                    "<|user|>\n"
                } else {
                    "<|assistant|>\n"
                };
                turns.template(tag);
                append(&mut turns, &text);
                turns.template("<|end|>\n");
                images.extend(imgs);
            }
            other => {
                return Err(invalid(
                    format!(
                        "messages[{i}].role '{other}' is not supported (system, user, assistant)"
                    ),
                    P,
                ))
            }
        }
        last_role = role;
    }
    if last_role != "user" {
        return Err(invalid("the last message must come from the user", P));
    }
    let mut prompt = MarkedText::new();
    prompt.template("<|system|>\n");
    append(&mut prompt, &system);
    prompt.template("<|end|>\n");
    append(&mut prompt, &turns);
    prompt.template("<|assistant|>\n");
    Ok((prompt, images))
}

/// Appends `part` to `to`, each piece keeping its kind.
fn append(to: &mut MarkedText, part: &MarkedText) {
    for (text, kind) in part.parts() {
        to.push(kind, text);
    }
}

/// One content part.
enum Part<'a> {
    Text(&'a str),
    Image(ImageRef),
}

/// Reads the content part `part` found at `at` (`messages[0].content[1]`,
/// `prompt[2]`); errors name it and carry `param`.
fn part<'a>(part: &'a Value, at: &str, param: &str) -> Result<Part<'a>, ApiError> {
    let kind = part
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.type must be a string"), param))?;
    match kind {
        "text" => part
            .get("text")
            .and_then(Value::as_str)
            .map(Part::Text)
            .ok_or_else(|| invalid(format!("{at}.text must be a string"), param)),
        "image_url" => {
            let spec: ImageUrl =
                serde_json::from_value(part.get("image_url").cloned().unwrap_or(Value::Null))
                    .map_err(|_| {
                        invalid(
                            format!("{at}.image_url must be an object with a 'url' string"),
                            param,
                        )
                    })?;
            let detail = match spec.detail.as_deref() {
                None | Some("auto") | Some("high") => Detail::High,
                Some("low") => Detail::Low,
                Some(other) => {
                    return Err(invalid(
                        format!("{at}.image_url.detail '{other}' is not one of low, high, auto"),
                        param,
                    ))
                }
            };
            Ok(Part::Image(ImageRef {
                url: spec.url,
                detail,
                at: at.to_string(),
            }))
        }
        other => Err(invalid(
            format!("{at}: content part type '{other}' is not supported (text, image_url)"),
            param,
        )
        .with_code("unsupported_content_type")),
    }
}

/// A message's text and its image parts, in order. Text parts are joined by
/// newlines. Each image part contributes the family's marker (which ends in
/// its own separator):
/// - [`Placement::Inline`] (v1.5, `"<image> "`): where the part stands, so
///   `[image, image, "Describe both."]` is `"<image> <image> Describe both."`
///   and `["First:", image, "Compare."]` is `"First:\n<image> Compare."`;
/// - [`Placement::Leading`] (r-v1, `"<image>\n"`): all markers first, then
///   the text, so `[image, "Q"]` and `["Q", image]` are both `"<image>\nQ"`,
///   the model card's one-image prompt.
fn content(
    content: Option<&Value>,
    i: usize,
    format: ChatImages<'_>,
) -> Result<(MarkedText, Vec<ImageRef>), ApiError> {
    const P: &str = "messages";
    match content {
        Some(Value::String(s)) => Ok((MarkedText::of(TextKind::Plain, s), Vec::new())),
        Some(Value::Array(parts)) => {
            let mut text = MarkedText::new();
            let mut leading = MarkedText::new();
            let mut images = Vec::new();
            // Whether the next text part needs a newline before it.
            let mut separate = false;
            for (j, p) in parts.iter().enumerate() {
                match part(p, &format!("messages[{i}].content[{j}]"), P)? {
                    Part::Text(t) => {
                        if separate {
                            text.template("\n");
                        }
                        text.plain(t);
                        separate = true;
                    }
                    Part::Image(image) => {
                        match format.placement {
                            Placement::Inline => {
                                if separate {
                                    text.template("\n");
                                }
                                text.template(format.marker);
                                separate = false;
                            }
                            Placement::Leading => leading.template(format.marker),
                        }
                        images.push(image);
                    }
                }
            }
            append(&mut leading, &text);
            Ok((leading, images))
        }
        Some(Value::Null) | None => Err(invalid(format!("messages[{i}].content is missing"), P)),
        Some(_) => Err(invalid(
            format!("messages[{i}].content must be a string or an array of parts"),
            P,
        )),
    }
}

/// The raw prompt of a completion request and its images: a string, a
/// one-string array, or content parts (each image part a bare `<image>` at
/// its place, text parts verbatim, nothing in between). The text is raw
/// model input (a base model's few-shot prompt separates its examples with
/// `<|endofchunk|>`), but only image parts place images: text that reads
/// `<image>` stays text.
fn completion_prompt(prompt: Option<&Value>) -> Result<(MarkedText, Vec<ImageRef>), ApiError> {
    const P: &str = "prompt";
    let items = match prompt {
        None | Some(Value::Null) => return Err(invalid("'prompt' is required", P)),
        Some(Value::String(s)) => return Ok((MarkedText::of(TextKind::Raw, s), Vec::new())),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(
                "'prompt' must be a string or an array of content parts",
                P,
            ))
        }
    };
    if items.is_empty() {
        return Err(invalid("'prompt' must not be an empty array", P));
    }
    if items.iter().all(Value::is_string) {
        return match items.as_slice() {
            [Value::String(s)] => Ok((MarkedText::of(TextKind::Raw, s), Vec::new())),
            _ => Err(unsupported(
                format!(
                    "'prompt' holds {} prompts; this server takes one prompt per request \
                     (send one request each)",
                    items.len()
                ),
                P,
            )),
        };
    }
    if items.iter().any(|v| v.is_number() || v.is_array()) {
        return Err(unsupported(
            "token-id prompts are not supported; send the prompt as a string or as content parts",
            P,
        ));
    }
    let mut text = MarkedText::new();
    let mut images = Vec::new();
    for (j, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(invalid(
                format!(
                    "prompt[{j}] must be a content part ({{\"type\": \"text\" | \"image_url\", …}}) \
                     like its neighbours"
                ),
                P,
            ));
        }
        match part(item, &format!("prompt[{j}]"), P)? {
            Part::Text(t) => text.push(TextKind::Raw, t),
            Part::Image(image) => {
                text.template(IMAGE_TOKEN);
                images.push(image);
            }
        }
    }
    Ok((text, images))
}

/// One token's log-probability entry (chat's `logprobs.content[]`).
pub fn logprob_entry(token: &str, logprob: f32, top: &[(String, f32)]) -> Value {
    json!({
        "token": token,
        "logprob": logprob,
        "bytes": token.as_bytes(),
        "top_logprobs": top.iter().map(|(t, l)| json!({
            "token": t, "logprob": l, "bytes": t.as_bytes()
        })).collect::<Vec<_>>(),
    })
}

/// One token of a completion's legacy `logprobs`: its text, log-probability
/// and alternatives.
pub struct LegacyToken<'a> {
    /// The token's text.
    pub token: &'a str,
    /// Its log-probability.
    pub logprob: f32,
    /// Alternatives, best first.
    pub top: &'a [(String, f32)],
}

/// The completions endpoint's `logprobs` object (`tokens`, `token_logprobs`,
/// `top_logprobs`, `text_offset`) for `tokens`, the first starting at
/// `offset` bytes into the completion text. Each `top_logprobs` map holds the
/// requested alternatives and, as OpenAI's does, the chosen token.
pub fn legacy_logprobs(tokens: &[LegacyToken<'_>], offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(tokens.len());
    let mut at = offset;
    for t in tokens {
        text_offset.push(at);
        at += t.token.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.token).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            let mut m = Map::new();
            for (alt, lp) in t.top {
                m.entry(alt.clone()).or_insert(json!(lp));
            }
            m.entry(t.token.to_string()).or_insert(json!(t.logprob));
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use blip3_engine::prompt::{chat_prompt, instruct_prompt};

    const R1: ChatImages<'static> = ChatImages {
        marker: blip3_engine::Family::Blip3R1.chat_image_marker(),
        placement: Placement::Leading,
    };
    const V15: ChatImages<'static> = ChatImages {
        marker: "<image> ",
        placement: Placement::Inline,
    };

    /// An r-v1 chat request.
    fn parse(v: Value) -> Result<Request, ApiError> {
        parse_chat(v.to_string().as_bytes(), R1)
    }

    fn parse_v15(v: Value) -> Result<Request, ApiError> {
        parse_chat(v.to_string().as_bytes(), V15)
    }

    fn completion(v: Value) -> Result<Request, ApiError> {
        parse_completion(v.to_string().as_bytes())
    }

    fn image(url: &str, detail: &str) -> Value {
        json!({"type": "image_url", "image_url": {"url": url, "detail": detail}})
    }

    fn text(t: &str) -> Value {
        json!({"type": "text", "text": t})
    }

    #[test]
    fn single_user_turn_with_image_matches_the_instruct_template() {
        let r = parse(json!({"messages": [{"role": "user", "content": [
            image("data:image/png;base64,AA==", "low"),
            text("What is this?"),
        ]}]}))
        .unwrap();
        assert_eq!(r.prompt.as_str(), instruct_prompt("What is this?", None));
        assert_eq!(r.images.len(), 1);
        assert_eq!(r.images[0].detail, Detail::Low);
        assert_eq!(r.images[0].at, "messages[0].content[0]");
        assert_eq!((r.n, r.max_tokens, r.stream), (1, None, false));
    }

    #[test]
    fn each_family_has_its_marker_and_placement() {
        assert_eq!(ChatImages::of(Family::Blip3R1), R1);
        assert_eq!(ChatImages::of(Family::XgenmmV15), V15);
    }

    #[test]
    fn images_before_the_question_give_the_family_chat_prompt() {
        for format in [V15, R1] {
            let body = json!({"messages": [{"role": "user", "content": [
                image("a", "high"), image("b", "low"), text("Describe both.")
            ]}]});
            let r = parse_chat(body.to_string().as_bytes(), format).unwrap();
            assert_eq!(
                r.prompt.as_str(),
                chat_prompt("Describe both.", None, format.marker, 2)
            );
            let urls: Vec<_> = r
                .images
                .iter()
                .map(|i| (i.url.as_str(), i.detail))
                .collect();
            assert_eq!(urls, [("a", Detail::High), ("b", Detail::Low)]);
            assert_eq!(r.endpoint, Endpoint::Chat);
        }
        let r = parse_v15(json!({"messages": [{"role": "user", "content": [
            image("a", "auto"), image("b", "auto"), text("Describe both.")
        ]}]}))
        .unwrap();
        assert!(r
            .prompt
            .as_str()
            .ends_with("<|user|>\n<image> <image> Describe both.<|end|>\n<|assistant|>\n"));
    }

    #[test]
    fn v15_keeps_markers_where_the_image_parts_stand() {
        // Interleaved: text parts joined by newlines, a marker in place of
        // each image (it carries its own separator).
        let r = parse_v15(json!({"messages": [{"role": "user", "content": [
            text("First:"), image("a", "auto"), text("Second:"), text("(below)"),
            image("b", "auto"), text("Compare.")
        ]}]}))
        .unwrap();
        assert!(
            r.prompt.as_str().ends_with(
                "<|user|>\nFirst:\n<image> Second:\n(below)\n<image> Compare.<|end|>\n<|assistant|>\n"
            ),
            "{}",
            r.prompt.as_str()
        );
        let r = parse_v15(json!({"messages": [{"role": "user", "content": [
            text("Q"), image("a", "auto")
        ]}]}))
        .unwrap();
        assert!(r
            .prompt
            .as_str()
            .ends_with("<|user|>\nQ\n<image> <|end|>\n<|assistant|>\n"));
    }

    #[test]
    fn r_v1_puts_each_message_markers_first() {
        // OpenAI clients often send [text, image]: r-v1 was trained with the
        // image at the start of the user turn, so both orders give the model
        // card's prompt.
        for content in [
            json!([text("What is this?"), image("a", "auto")]),
            json!([image("a", "auto"), text("What is this?")]),
        ] {
            let r = parse(json!({"messages": [{"role": "user", "content": content}]})).unwrap();
            assert_eq!(r.prompt.as_str(), instruct_prompt("What is this?", None));
            assert_eq!(r.images[0].url, "a");
        }
        // Several images: all markers first, in part order, then the text.
        let r = parse(json!({"messages": [{"role": "user", "content": [
            text("First:"), image("a", "auto"), text("Second:"), image("b", "low"),
            text("Compare.")
        ]}]}))
        .unwrap();
        assert!(
            r.prompt.as_str().ends_with(
                "<|user|>\n<image>\n<image>\nFirst:\nSecond:\nCompare.<|end|>\n<|assistant|>\n"
            ),
            "{}",
            r.prompt.as_str()
        );
        let got: Vec<_> = r
            .images
            .iter()
            .map(|i| (i.url.as_str(), i.at.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "messages[0].content[1]"),
                ("b", "messages[0].content[3]")
            ]
        );
    }

    #[test]
    fn images_in_several_user_turns_keep_their_order() {
        let r = parse(json!({"messages": [
            {"role": "user", "content": [image("a", "low"), text("What is this?")]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": [image("b", "high"), text("And this?")]}
        ]}))
        .unwrap();
        assert_eq!(
            r.prompt.as_str(),
            format!(
                "<|system|>\n{DEFAULT_SYSTEM}<|end|>\n<|user|>\n<image>\nWhat is this?<|end|>\n\
                 <|assistant|>\nA cat.<|end|>\n<|user|>\n<image>\nAnd this?<|end|>\n<|assistant|>\n"
            )
        );
        let got: Vec<_> = r
            .images
            .iter()
            .map(|i| (i.url.as_str(), i.detail, i.at.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Detail::Low, "messages[0].content[0]"),
                ("b", Detail::High, "messages[2].content[0]")
            ]
        );
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let cases = [
            (json!({"messages": []}), "non-empty"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "input_audio",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "n": 0}),
                "'n'",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "tools": []}),
                "tools",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}),
                "logprobs",
            ),
            (
                json!({"messages": [{"role": "robot", "content": "hi"}]}),
                "robot",
            ),
            (
                json!({"messages": [
                    {"role": "system", "content": [image("a", "auto")]},
                    {"role": "user", "content": "hi"}]}),
                "system message cannot hold an image",
            ),
            (
                json!({"messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [image("a", "auto")]},
                    {"role": "user", "content": "hi"}]}),
                "only user messages",
            ),
            (
                json!({"messages": [{"role": "user", "content": [
                    image("a", "auto"), image("b", "huge")]}]}),
                "messages[0].content[1].image_url.detail 'huge'",
            ),
        ];
        for (body, needle) in cases {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        let e = parse_chat(b"{not json", R1).unwrap_err();
        assert!(e.message.contains("not valid JSON"));
    }

    #[test]
    fn multi_turn_and_system() {
        let r = parse(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "A"},
            {"role": "assistant", "content": "B"},
            {"role": "user", "content": "C"}
        ], "stop": "x", "n": 2, "seed": 5, "temperature": 0.7}))
        .unwrap();
        assert_eq!(
            r.prompt.as_str(),
            "<|system|>\nBe brief.<|end|>\n<|user|>\nA<|end|>\n<|assistant|>\nB<|end|>\n<|user|>\nC<|end|>\n<|assistant|>\n"
        );
        assert!(r.images.is_empty());
        assert_eq!((r.n, r.stop.len(), r.seeded), (2, 1, true));
        assert!((r.sampling.temperature - 0.7).abs() < 1e-6);
    }

    #[test]
    fn completion_prompt_parts_are_raw_with_a_bare_image_token_each() {
        let r = completion(json!({"model": "m", "prompt": [
            image("a", "low"), text("Output:a cat<|endofchunk|>"), image("b", "auto"),
            text("Output:")
        ]}))
        .unwrap();
        assert_eq!(r.endpoint, Endpoint::Completion);
        assert_eq!(
            r.prompt.as_str(),
            "<image>Output:a cat<|endofchunk|><image>Output:"
        );
        let got: Vec<_> = r
            .images
            .iter()
            .map(|i| (i.url.as_str(), i.detail, i.at.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Detail::Low, "prompt[0]"),
                ("b", Detail::High, "prompt[2]")
            ]
        );
        // Defaults: max_tokens left to the endpoint (16), greedy, no logprobs.
        assert_eq!(
            (r.max_tokens, r.n, r.logprobs, r.stream),
            (None, 1, false, false)
        );

        for prompt in [json!("A photo of"), json!(["A photo of"])] {
            let r = completion(json!({"prompt": prompt})).unwrap();
            assert_eq!(r.prompt.as_str(), "A photo of");
            assert!(r.images.is_empty());
        }
        let r = completion(
            json!({"prompt": "x", "logprobs": 2, "max_tokens": 5, "n": 2,
                                  "best_of": 2, "echo": false, "stream": true,
                                  "stream_options": {"include_usage": true}}),
        )
        .unwrap();
        assert_eq!(
            (
                r.logprobs,
                r.top_logprobs,
                r.max_tokens,
                r.n,
                r.stream,
                r.include_usage
            ),
            (true, 2, Some(5), 2, true, true)
        );
        let r = completion(json!({"prompt": "x", "logprobs": 0})).unwrap();
        assert_eq!((r.logprobs, r.top_logprobs), (true, 0));
    }

    #[test]
    fn bad_completion_requests_name_the_problem() {
        let cases = [
            (json!({}), "'prompt' is required", None),
            (json!({"prompt": 3}), "string or an array", None),
            (json!({"prompt": []}), "empty", None),
            (
                json!({"prompt": ["a", "b"]}),
                "one prompt per request",
                Some("unsupported_parameter"),
            ),
            (
                json!({"prompt": [1, 2, 3]}),
                "token-id prompts",
                Some("unsupported_parameter"),
            ),
            (
                json!({"prompt": [[1, 2], [3]]}),
                "token-id prompts",
                Some("unsupported_parameter"),
            ),
            (
                json!({"prompt": [image("a", "auto"), "Output:"]}),
                "prompt[1] must be a content part",
                None,
            ),
            (
                json!({"prompt": [{"type": "input_audio"}]}),
                "prompt[0]: content part type 'input_audio'",
                Some("unsupported_content_type"),
            ),
            (
                json!({"prompt": [image("a", "huge")]}),
                "prompt[0].image_url.detail 'huge'",
                None,
            ),
            (
                json!({"prompt": [{"type": "image_url"}]}),
                "prompt[0].image_url must be an object",
                None,
            ),
            (
                json!({"prompt": "x", "echo": true}),
                "'echo' is not supported",
                Some("unsupported_parameter"),
            ),
            (
                json!({"prompt": "x", "suffix": "y"}),
                "'suffix'",
                Some("unsupported_parameter"),
            ),
            (
                json!({"prompt": "x", "best_of": 3}),
                "best_of",
                Some("unsupported_parameter"),
            ),
            (
                json!({"prompt": "x", "logprobs": true}),
                "not a boolean",
                None,
            ),
            (
                json!({"prompt": "x", "logprobs": 21}),
                "between 0 and 20",
                None,
            ),
            (json!({"prompt": "x", "max_tokens": 0}), "at least 1", None),
            (json!({"prompt": "x", "n": 9}), "'n'", None),
            (
                json!({"prompt": "x", "logit_bias": {"1": 5}}),
                "logit_bias",
                Some("unsupported_parameter"),
            ),
        ];
        for (body, needle, code) in cases {
            let e = completion(body.clone()).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
            if let Some(code) = code {
                assert_eq!(e.code, Some(code), "{body}");
            }
        }
    }

    #[test]
    fn legacy_logprobs_hold_offsets_and_the_chosen_token() {
        let top = [("a".to_string(), -0.1), ("b".to_string(), -2.0)];
        let tokens = [
            LegacyToken {
                token: "b",
                logprob: -2.0,
                top: &top,
            },
            LegacyToken {
                token: "cd",
                logprob: -0.5,
                top: &[],
            },
        ];
        let v = legacy_logprobs(&tokens, 3);
        assert_eq!(v["tokens"], json!(["b", "cd"]));
        assert_eq!(v["text_offset"], json!([3, 4]));
        assert_eq!(v["token_logprobs"], json!([-2.0, -0.5]));
        assert_eq!(v["top_logprobs"][0].as_object().unwrap().len(), 2);
        assert_eq!(v["top_logprobs"][1], json!({"cd": -0.5}));
    }
}
