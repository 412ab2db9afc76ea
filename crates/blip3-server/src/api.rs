//! The OpenAI chat-completions wire format: parsing a request body into a
//! generation request (with precise 4xx errors), and the response objects.

use blip3_engine::prompt::DEFAULT_SYSTEM;
use blip3_engine::SamplingParams;
use serde::Deserialize;
use serde_json::{json, Value};

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

/// A request's image reference.
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// The URL as sent.
    pub url: String,
    /// Requested detail.
    pub detail: Detail,
    /// Where the part stands in the request (`messages[0].content[1]`), for
    /// error messages.
    pub at: String,
}

/// A validated chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Model name echoed back.
    pub model: Option<String>,
    /// The templated prompt: one image marker per image, where its part stands.
    pub prompt: String,
    /// The images, in prompt (`<image>`) order.
    pub images: Vec<ImageRef>,
    /// `max_tokens` / `max_completion_tokens` (None: up to the context).
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
}

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

/// Most choices per request.
pub const MAX_N: usize = 8;

fn invalid(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid(message, Some(param))
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

/// Parses and validates a request body. `image_marker` is the loaded model
/// family's text for one image in a chat turn
/// ([`Family::chat_image_marker`](blip3_engine::Family::chat_image_marker):
/// `"<image>\n"` for r-v1, `"<image> "` for v1.5).
pub fn parse_chat(body: &[u8], image_marker: &str) -> Result<ChatRequest, ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}"), None))?;
    if !body.is_object() {
        return Err(ApiError::invalid(
            "request body must be a JSON object",
            None,
        ));
    }
    for field in REJECTED {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            return Err(
                invalid(format!("'{field}' is not supported by this server"), field)
                    .with_code("unsupported_parameter"),
            );
        }
    }
    for field in ["frequency_penalty", "presence_penalty"] {
        if get_f32(&body, field)?.is_some_and(|v| v != 0.0) {
            return Err(invalid(
                format!("'{field}' is not supported; use 'repetition_penalty'"),
                field,
            )
            .with_code("unsupported_parameter"));
        }
    }
    let model = match body.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("'model' must be a string", "model")),
    };
    let (prompt, images) = template(body.get("messages"), image_marker)?;

    let max_tokens = match get_uint(&body, "max_completion_tokens")? {
        Some(v) => Some(v),
        None => get_uint(&body, "max_tokens")?,
    };
    if max_tokens == Some(0) {
        return Err(invalid("'max_tokens' must be at least 1", "max_tokens"));
    }
    let temperature = get_f32(&body, "temperature")?.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(invalid(
            "'temperature' must be between 0 and 2",
            "temperature",
        ));
    }
    let top_p = get_f32(&body, "top_p")?.unwrap_or(1.0);
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
    let repetition_penalty = get_f32(&body, "repetition_penalty")?.unwrap_or(1.0);
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
    let n = get_uint(&body, "n")?.unwrap_or(1) as usize;
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
    let logprobs = get_bool(&body, "logprobs")?.unwrap_or(false);
    let top_logprobs = get_uint(&body, "top_logprobs")?.unwrap_or(0) as usize;
    if top_logprobs > 20 {
        return Err(invalid(
            "'top_logprobs' must be between 0 and 20",
            "top_logprobs",
        ));
    }
    if top_logprobs > 0 && !logprobs {
        return Err(invalid(
            "'top_logprobs' requires 'logprobs': true",
            "top_logprobs",
        ));
    }
    let stream = get_bool(&body, "stream")?.unwrap_or(false);
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
    Ok(ChatRequest {
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
    })
}

/// Builds the Phi-3 instruct prompt from the messages (spec §11.1): an
/// optional system message, alternating user/assistant turns, and the
/// assistant tag to answer after. Each image part of a user turn becomes
/// `image_marker` where the part stands (see [`content`]); the images are
/// returned in that order.
fn template(
    messages: Option<&Value>,
    image_marker: &str,
) -> Result<(String, Vec<ImageRef>), ApiError> {
    const P: &str = "messages";
    let Some(Value::Array(messages)) = messages else {
        return Err(invalid("'messages' must be a non-empty array", P));
    };
    if messages.is_empty() {
        return Err(invalid("'messages' must be a non-empty array", P));
    }
    let mut system = DEFAULT_SYSTEM.to_string();
    let mut turns = String::new();
    let mut images = Vec::new();
    let mut last_role = "";
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("messages[{i}].role must be a string"), P))?;
        let (text, imgs) = content(m.get("content"), i, image_marker)?;
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
                    "<|user|>"
                } else {
                    "<|assistant|>"
                };
                turns.push_str(tag);
                turns.push('\n');
                turns.push_str(&text);
                turns.push_str("<|end|>\n");
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
    Ok((
        format!("<|system|>\n{system}<|end|>\n{turns}<|assistant|>\n"),
        images,
    ))
}

/// A message's text and its image parts, in order. Parts are joined by
/// newlines, except after an image: an image part contributes `image_marker`
/// at its place, and the marker ends in its own separator. So for v1.5
/// (`"<image> "`) `[image, image, "Describe both."]` is
/// `"<image> <image> Describe both."`, and for r-v1 (`"<image>\n"`)
/// `[image, "Q"]` is `"<image>\nQ"`, the model card's one-image prompt.
fn content(
    content: Option<&Value>,
    i: usize,
    image_marker: &str,
) -> Result<(String, Vec<ImageRef>), ApiError> {
    const P: &str = "messages";
    match content {
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut images = Vec::new();
            // Whether the next part needs a newline before it.
            let mut separate = false;
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        format!("messages[{i}].content[{j}].type must be a string"),
                        P,
                    )
                })?;
                match kind {
                    "text" => {
                        let t = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            invalid(format!("messages[{i}].content[{j}].text must be a string"), P)
                        })?;
                        if separate {
                            text.push('\n');
                        }
                        text.push_str(t);
                        separate = true;
                    }
                    "image_url" => {
                        let spec: ImageUrl = serde_json::from_value(
                            part.get("image_url").cloned().unwrap_or(Value::Null),
                        )
                        .map_err(|_| {
                            invalid(
                                format!("messages[{i}].content[{j}].image_url must be an object with a 'url' string"),
                                P,
                            )
                        })?;
                        let detail = match spec.detail.as_deref() {
                            None | Some("auto") | Some("high") => Detail::High,
                            Some("low") => Detail::Low,
                            Some(other) => {
                                return Err(invalid(
                                    format!("messages[{i}].content[{j}].image_url.detail '{other}' is not one of low, high, auto"),
                                    P,
                                ))
                            }
                        };
                        if separate {
                            text.push('\n');
                        }
                        text.push_str(image_marker);
                        separate = false;
                        images.push(ImageRef {
                            url: spec.url,
                            detail,
                            at: format!("messages[{i}].content[{j}]"),
                        });
                    }
                    other => {
                        return Err(invalid(
                            format!("messages[{i}].content[{j}]: content part type '{other}' is not supported (text, image_url)"),
                            P,
                        )
                        .with_code("unsupported_content_type"))
                    }
                }
            }
            Ok((text, images))
        }
        Some(Value::Null) | None => Err(invalid(format!("messages[{i}].content is missing"), P)),
        Some(_) => Err(invalid(
            format!("messages[{i}].content must be a string or an array of parts"),
            P,
        )),
    }
}

/// One token's log-probability entry (OpenAI `logprobs.content[]`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use blip3_engine::prompt::{chat_prompt, instruct_prompt, LINE_IMAGE_MARKER};

    /// v1.5's marker (`Family::XgenmmV15.chat_image_marker()`).
    const INLINE: &str = "<image> ";

    fn parse(v: Value) -> Result<ChatRequest, ApiError> {
        parse_chat(v.to_string().as_bytes(), LINE_IMAGE_MARKER)
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
        assert_eq!(r.prompt, instruct_prompt("What is this?", None));
        assert_eq!(r.images.len(), 1);
        assert_eq!(r.images[0].detail, Detail::Low);
        assert_eq!(r.images[0].at, "messages[0].content[0]");
        assert_eq!((r.n, r.max_tokens, r.stream), (1, None, false));
    }

    #[test]
    fn family_markers_go_where_the_image_parts_stand() {
        for marker in [INLINE, LINE_IMAGE_MARKER] {
            let body = json!({"messages": [{"role": "user", "content": [
                image("a", "high"), image("b", "low"), text("Describe both.")
            ]}]});
            let r = parse_chat(body.to_string().as_bytes(), marker).unwrap();
            assert_eq!(r.prompt, chat_prompt("Describe both.", None, marker, 2));
            let urls: Vec<_> = r
                .images
                .iter()
                .map(|i| (i.url.as_str(), i.detail))
                .collect();
            assert_eq!(urls, [("a", Detail::High), ("b", Detail::Low)]);
        }
        let r = parse_chat(
            json!({"messages": [{"role": "user", "content": [
                image("a", "auto"), image("b", "auto"), text("Describe both.")
            ]}]})
            .to_string()
            .as_bytes(),
            INLINE,
        )
        .unwrap();
        assert!(r
            .prompt
            .ends_with("<|user|>\n<image> <image> Describe both.<|end|>\n<|assistant|>\n"));

        // Interleaved: text parts joined by newlines, a marker in place of
        // each image (it carries its own separator).
        let r = parse_chat(
            json!({"messages": [{"role": "user", "content": [
                text("First:"), image("a", "auto"), text("Second:"), text("(below)"),
                image("b", "auto"), text("Compare.")
            ]}]})
            .to_string()
            .as_bytes(),
            INLINE,
        )
        .unwrap();
        assert!(
            r.prompt.ends_with(
                "<|user|>\nFirst:\n<image> Second:\n(below)\n<image> Compare.<|end|>\n<|assistant|>\n"
            ),
            "{}",
            r.prompt
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
            r.prompt,
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
        let e = parse_chat(b"{not json", LINE_IMAGE_MARKER).unwrap_err();
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
            r.prompt,
            "<|system|>\nBe brief.<|end|>\n<|user|>\nA<|end|>\n<|assistant|>\nB<|end|>\n<|user|>\nC<|end|>\n<|assistant|>\n"
        );
        assert!(r.images.is_empty());
        assert_eq!((r.n, r.stop.len(), r.seeded), (2, 1, true));
        assert!((r.sampling.temperature - 0.7).abs() < 1e-6);
    }
}
