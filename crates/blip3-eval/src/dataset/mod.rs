//! Benchmark data read from its public formats into [`EvalItem`]s, with the
//! reference JSON the scorer takes (the layout `blip3 score --ref` documents).

pub mod captions;
pub mod tsv;
pub mod vqa;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::EvalError;

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A file on disk, read when the item is asked.
    File(PathBuf),
    /// Bytes held in memory (VLMEvalKit's base64 column, decoded).
    Bytes(Arc<Vec<u8>>),
}

impl ImageRef {
    /// The image file's bytes.
    pub fn read(&self) -> Result<Arc<Vec<u8>>, EvalError> {
        match self {
            Self::Bytes(b) => Ok(b.clone()),
            Self::File(path) => std::fs::read(path)
                .map(Arc::new)
                .map_err(|e| EvalError::io(path, e)),
        }
    }
}

/// One benchmark item (a test question or caption image), or one
/// demonstration of the few-shot pool.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    /// The id predictions and references are keyed by.
    pub id: String,
    /// The item's images, in prompt order.
    pub images: Vec<ImageRef>,
    /// VQA: the question; chat tasks: the whole user text (VLMEvalKit's
    /// prompt); captions: none.
    pub question: Option<String>,
    /// Demonstrations: the answer or caption a shot shows.
    pub answer: Option<String>,
}

/// A benchmark split ready to run: the items and the scorer's reference.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Items in file order.
    pub items: Vec<EvalItem>,
    /// The scorer's reference, keyed by item id.
    pub reference: serde_json::Value,
    /// MD5 of the data file, when the task checks one.
    pub md5: Option<String>,
}

/// The folder images are looked up in: `--images`, else the data file's folder.
pub fn image_root(data: &Path, images: Option<&Path>) -> PathBuf {
    match images {
        Some(dir) => dir.to_path_buf(),
        None => data
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    }
}

/// Reads and parses a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| EvalError::Data {
        location: path.display().to_string(),
        problem: format!("not JSON ({e})"),
    })
}

/// A JSON id (string or integer) as a string.
pub(crate) fn id_of(value: Option<&serde_json::Value>) -> Option<String> {
    value.and_then(blip3_metrics::predictions::id_string)
}
