//! OpenAI-style chat messages to a prompt and its images, with the server's
//! own template (`blip3_server::api::parse_chat`): `Model.chat` builds the
//! prompt `/v1/chat/completions` builds, markers placed per family, and
//! messages' text stays plain text (it cannot forge a turn or an image).

use blip3_engine::{Family, MarkedText};
use blip3_server::api::{parse_chat, ChatImages, Detail};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use serde_json::{json, Map, Value};

use crate::errors::Failure;
use crate::images::{self, ImageSource};

/// Placeholder URL of image part `k`, mapped back after parsing.
const PLACEHOLDER: &str = "blip3-py-image:";

/// The messages as a request body, with each image part's source.
pub struct ChatInput {
    body: Vec<u8>,
    sources: Vec<ImageSource>,
}

/// Reads `messages` under the GIL: a list of `{"role", "content"}` dicts whose
/// content is a string or a list of parts (`{"type": "text", "text"}`,
/// `{"type": "image_url", "image_url": {"url"} or "url"}` with a `data:` or
/// `file://` URL or a local path, or `{"type": "image", "image": PIL image,
/// numpy array, path or bytes}`).
pub fn read_messages(messages: &Bound<'_, PyAny>) -> PyResult<ChatInput> {
    let items = sequence(messages).ok_or_else(|| {
        PyTypeError::new_err("messages must be a list of {'role': ..., 'content': ...} dicts")
    })?;
    let mut sources = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, message) in items.iter().enumerate() {
        let message = message.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "messages[{i}] must be a dict with 'role' and 'content'"
            ))
        })?;
        let mut m = Map::new();
        if let Some(role) = message.get_item("role")? {
            m.insert("role".into(), plain(&role, &format!("messages[{i}].role"))?);
        }
        let content = match message.get_item("content")? {
            None => Value::Null,
            Some(c) => match sequence(&c) {
                Some(parts) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        out.push(part(
                            p,
                            &format!("messages[{i}].content[{j}]"),
                            &mut sources,
                        )?);
                    }
                    Value::Array(out)
                }
                None => plain(&c, &format!("messages[{i}].content"))?,
            },
        };
        m.insert("content".into(), content);
        out.push(Value::Object(m));
    }
    let body = serde_json::to_vec(&json!({ "messages": out }))
        .map_err(|e| PyTypeError::new_err(format!("messages: {e}")))?;
    Ok(ChatInput { body, sources })
}

impl ChatInput {
    /// The templated prompt and the images in `<image>` order, for `family`.
    pub fn prompt(self, family: Family) -> Result<(MarkedText, Vec<ImageSource>), Failure> {
        let request = parse_chat(&self.body, ChatImages::of(family))
            .map_err(|e| Failure::Request(e.message))?;
        let mut sources: Vec<Option<ImageSource>> = self.sources.into_iter().map(Some).collect();
        let mut ordered = Vec::with_capacity(request.images.len());
        for image in &request.images {
            if image.detail == Detail::Low {
                return Err(Failure::Request(format!(
                    "{}: detail 'low' is not supported by the Python API (every image is tiled \
                     as 'auto'; load the model with aspect='pad' for one global view per image)",
                    image.at
                )));
            }
            let source = image
                .url
                .strip_prefix(PLACEHOLDER)
                .and_then(|k| k.parse::<usize>().ok())
                .and_then(|k| sources.get_mut(k))
                .and_then(Option::take)
                .ok_or_else(|| Failure::Other(format!("{}: image part not found", image.at)))?;
            ordered.push(source);
        }
        Ok((request.prompt, ordered))
    }
}

/// A list or tuple's items (strings and bytes are not sequences here).
fn sequence<'py>(obj: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = obj.cast::<PyList>() {
        return Some(list.iter().collect());
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return Some(tuple.iter().collect());
    }
    None
}

/// A JSON value from a plain Python value (str, bool, int, float, None, and
/// lists and str-keyed dicts of them).
fn plain(obj: &Bound<'_, PyAny>, at: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(b) = obj.extract::<bool>() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = obj.extract::<f64>() {
        return Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if let Some(items) = sequence(obj) {
        return items
            .iter()
            .enumerate()
            .map(|(k, v)| plain(v, &format!("{at}[{k}]")))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = Map::new();
        for (k, v) in d.iter() {
            let key: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("{at}: keys must be strings")))?;
            let value = plain(&v, &format!("{at}.{key}"))?;
            m.insert(key, value);
        }
        return Ok(Value::Object(m));
    }
    Err(PyTypeError::new_err(format!(
        "{at}: unexpected {}",
        obj.get_type().name()?
    )))
}

/// One content part; image parts become placeholder `image_url` parts and
/// their sources are kept in `sources`.
fn part(obj: &Bound<'_, PyAny>, at: &str, sources: &mut Vec<ImageSource>) -> PyResult<Value> {
    let Ok(d) = obj.cast::<PyDict>() else {
        return plain(obj, at);
    };
    let kind = d
        .get_item("type")?
        .and_then(|t| t.extract::<String>().ok())
        .unwrap_or_default();
    let (source, detail) = match kind.as_str() {
        // transformers' chat-template style: the image object itself.
        "image" => {
            let image = d.get_item("image")?.ok_or_else(|| {
                PyTypeError::new_err(format!("{at}: an 'image' part needs 'image'"))
            })?;
            (images::source(&image, sources.len())?, None)
        }
        "image_url" => {
            let spec = d.get_item("image_url")?.ok_or_else(|| {
                PyTypeError::new_err(format!("{at}: an 'image_url' part needs 'image_url'"))
            })?;
            let (url, detail) = match spec.cast::<PyDict>() {
                Ok(spec) => (
                    spec.get_item("url")?,
                    match spec.get_item("detail")? {
                        Some(d) => Some(plain(&d, &format!("{at}.image_url.detail"))?),
                        None => None,
                    },
                ),
                Err(_) => (Some(spec), None),
            };
            let url: String = url.and_then(|u| u.extract().ok()).ok_or_else(|| {
                PyTypeError::new_err(format!("{at}.image_url must hold a 'url' string"))
            })?;
            (url_source(obj.py(), url, at)?, detail)
        }
        _ => return plain(obj, at),
    };
    let k = sources.len();
    sources.push(source);
    let mut spec = Map::new();
    spec.insert("url".into(), Value::String(format!("{PLACEHOLDER}{k}")));
    if let Some(detail) = detail {
        spec.insert("detail".into(), detail);
    }
    Ok(json!({ "type": "image_url", "image_url": spec }))
}

/// An `image_url`'s URL: `data:` and `file://` URLs are read as the server
/// reads them; anything without a scheme is a local path.
fn url_source(py: Python<'_>, url: String, at: &str) -> PyResult<ImageSource> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("data") | Some("file") => Ok(ImageSource::Url(url)),
        Some("http") | Some("https") => Err(crate::errors::request_error(
            py,
            format!(
                "{at}: remote image URLs are not fetched by the Python API; download the image \
                 and pass its bytes or path"
            ),
        )),
        _ => Ok(ImageSource::Path(url.into())),
    }
}
