//! Caption benchmarks (COCO, NoCaps, TextCaps) in COCO's JSON layouts:
//! - COCO annotation style: `images[] {id, file_name}` and
//!   `annotations[] {image_id, caption}`; every image is an item;
//! - Karpathy's split file (`dataset_coco.json`, OpenFlamingo's input):
//!   `images[] {cocoid|imgid, filepath, filename, split, sentences[] {raw}}`,
//!   the `split` field choosing test items or the demonstration pool.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{id_of, read_json, Dataset, EvalItem, ImageRef};
use crate::EvalError;

/// Which part of a Karpathy-style file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split<'a> {
    /// Items whose `split` is this name (`test`, `val`).
    Named(&'a str),
    /// OpenFlamingo's demonstration pool: `split == "train"` (not `restval`);
    /// a COCO annotation file (no split) is the pool as a whole.
    Train,
    /// The pool that comes with the evaluated file: its `train` split when it
    /// is Karpathy's file, nothing when it is a COCO annotation file.
    OwnTrain,
}

/// Caption items and their references (`{id: [captions]}`).
pub fn load(path: &Path, images: &Path, split: Split<'_>) -> Result<Dataset, EvalError> {
    let json = read_json(path)?;
    let name = path.display().to_string();
    let Some(entries) = json.get("images").and_then(Value::as_array) else {
        return Err(EvalError::data(&name, "no \"images\" array"));
    };
    match json.get("annotations") {
        Some(_) if split == Split::OwnTrain => Ok(Dataset {
            items: Vec::new(),
            reference: Value::Object(serde_json::Map::new()),
            md5: None,
        }),
        Some(annotations) => coco_style(&name, entries, annotations, images),
        None => karpathy_style(&name, entries, images, split),
    }
}

fn coco_style(
    name: &str,
    entries: &[Value],
    annotations: &Value,
    images: &Path,
) -> Result<Dataset, EvalError> {
    let Some(annotations) = annotations.as_array() else {
        return Err(EvalError::data(name, "\"annotations\" is not an array"));
    };
    let mut captions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, a) in annotations.iter().enumerate() {
        let at = || format!("{name}: annotations[{i}]");
        let id = id_of(a.get("image_id")).ok_or_else(|| EvalError::data(at(), "no image_id"))?;
        let caption = a
            .get("caption")
            .and_then(Value::as_str)
            .ok_or_else(|| EvalError::data(at(), "no \"caption\" string"))?;
        captions.entry(id).or_default().push(caption.to_string());
    }
    let mut items = Vec::with_capacity(entries.len());
    let mut reference = serde_json::Map::new();
    for (i, e) in entries.iter().enumerate() {
        let at = || format!("{name}: images[{i}]");
        let id = id_of(e.get("id")).ok_or_else(|| EvalError::data(at(), "no \"id\""))?;
        let file = e
            .get("file_name")
            .and_then(Value::as_str)
            .ok_or_else(|| EvalError::data(at(), "no \"file_name\""))?;
        let refs = captions.remove(&id).unwrap_or_default();
        if refs.is_empty() {
            return Err(EvalError::data(at(), format!("image {id} has no caption")));
        }
        items.push(EvalItem {
            id: id.clone(),
            images: vec![ImageRef::File(images.join(file))],
            question: None,
            answer: refs.first().map(|c| c.trim().to_string()),
        });
        reference.insert(id, refs.into());
    }
    if let Some(orphan) = captions.keys().next() {
        return Err(EvalError::data(
            name,
            format!("captions for image {orphan}, which \"images\" does not list"),
        ));
    }
    Ok(Dataset {
        items,
        reference: Value::Object(reference),
        md5: None,
    })
}

fn karpathy_style(
    name: &str,
    entries: &[Value],
    images: &Path,
    split: Split<'_>,
) -> Result<Dataset, EvalError> {
    let mut items = Vec::new();
    let mut reference = serde_json::Map::new();
    for (i, e) in entries.iter().enumerate() {
        let at = || format!("{name}: images[{i}]");
        let item_split = e
            .get("split")
            .and_then(Value::as_str)
            .ok_or_else(|| EvalError::data(at(), "no \"split\" (nor an \"annotations\" array)"))?;
        let wanted = match split {
            Split::Named(s) => item_split == s,
            Split::Train | Split::OwnTrain => item_split == "train",
        };
        if !wanted {
            continue;
        }
        let id = id_of(e.get("cocoid"))
            .or_else(|| {
                // Flickr30k: the file name without its extension.
                e.get("filename")
                    .and_then(Value::as_str)
                    .map(|f| f.split('.').next().unwrap_or(f).to_string())
            })
            .ok_or_else(|| EvalError::data(at(), "no \"cocoid\" nor \"filename\""))?;
        let file = e
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| EvalError::data(at(), "no \"filename\""))?;
        // OpenFlamingo reads COCO images from the train2014 or val2014 folder
        // named by `filepath`; a flat folder works too.
        let nested = e
            .get("filepath")
            .and_then(Value::as_str)
            .map(|dir| images.join(dir).join(file));
        let path = match nested {
            Some(p) if p.exists() => p,
            _ => images.join(file),
        };
        let refs: Vec<String> = e
            .get("sentences")
            .and_then(Value::as_array)
            .ok_or_else(|| EvalError::data(at(), "no \"sentences\" array"))?
            .iter()
            .map(|s| s.get("raw").and_then(Value::as_str).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| EvalError::data(at(), "a sentence without a \"raw\" string"))?;
        if refs.is_empty() {
            return Err(EvalError::data(at(), "no sentences"));
        }
        if reference.contains_key(&id) {
            return Err(EvalError::data(
                at(),
                format!("image id {id} appears twice"),
            ));
        }
        items.push(EvalItem {
            id: id.clone(),
            images: vec![ImageRef::File(path)],
            question: None,
            answer: refs.first().map(|c| c.trim().to_string()),
        });
        reference.insert(id, refs.into());
    }
    Ok(Dataset {
        items,
        reference: Value::Object(reference),
        md5: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, v: &Value) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }

    #[test]
    fn both_layouts() {
        let dir = std::env::temp_dir().join(format!("blip3-captions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let coco = serde_json::json!({
            "images": [{"id": 7, "file_name": "a.png"}, {"id": 9, "file_name": "b.png"}],
            "annotations": [{"image_id": 9, "caption": "x"}, {"image_id": 7, "caption": " y "},
                            {"image_id": 7, "caption": "z"}]
        });
        let p = write(&dir, "coco.json", &coco);
        let loaded = load(&p, &dir, Split::Named("test")).unwrap();
        let items = loaded.items;
        let refs = loaded.reference;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].answer.as_deref(), Some("y"));
        assert_eq!(refs["7"], serde_json::json!([" y ", "z"]));
        let karpathy = serde_json::json!({"images": [
            {"cocoid": 1, "filename": "p.jpg", "filepath": "val2014", "split": "test", "sentences": [{"raw": "a"}]},
            {"cocoid": 2, "filename": "q.jpg", "filepath": "train2014", "split": "train", "sentences": [{"raw": "b"}]},
            {"cocoid": 3, "filename": "r.jpg", "filepath": "train2014", "split": "restval", "sentences": [{"raw": "c"}]}
        ]});
        let p = write(&dir, "karpathy.json", &karpathy);
        let loaded = load(&p, &dir, Split::Named("test")).unwrap();
        let test = loaded.items;
        assert_eq!(test.len(), 1);
        let loaded = load(&p, &dir, Split::Train).unwrap();
        let train = loaded.items;
        assert_eq!(
            train.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["2"]
        );
        // A COCO annotation file brings no pool of its own; as --train it is one.
        let coco = write(&dir, "coco2.json", &coco);
        assert!(load(&coco, &dir, Split::OwnTrain).unwrap().items.is_empty());
        assert_eq!(load(&coco, &dir, Split::Train).unwrap().items.len(), 2);
        let bad = serde_json::json!({"images": [{"id": 1, "file_name": "a"}], "annotations": []});
        let p = write(&dir, "bad.json", &bad);
        let e = load(&p, &dir, Split::Named("test"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no caption"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
