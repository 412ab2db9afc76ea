//! The slow-tokenizer rules of spec §11.3 around the SentencePiece encoder.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use crate::added::{split_on_added_where, AddedToken, Segment};
use crate::marked::{MarkedText, TextKind};
use crate::sentencepiece::{SentencePieceBpe, SPACE_MARKER};
use crate::TokenizerError;

/// The three tokens BLIP-3's `update_special_tokens` adds, in order
/// (ids 32012, 32013, 32014 on the Phi-3 vocabulary).
pub const BLIP3_EXTRA_TOKENS: [&str; 3] = ["<image>", "<image placeholder>", "<|endofchunk|>"];

/// The added tokens that stand for images: only a prompt's template places
/// them (a client's text that reads `<image>` stays text).
const IMAGE_MARKERS: [&str; 2] = ["<image>", "<image placeholder>"];

/// Phi-3 tokenizer with BLIP-3's added tokens and the slow Python rules.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    spm: SentencePieceBpe,
    added: Vec<AddedToken>,
    /// Named special tokens (bos/eos/unk/pad and the BLIP-3 extras): rule 5 and decoding.
    special_ids: HashSet<u32>,
    special_contents: HashSet<String>,
    bos_id: u32,
    add_bos: bool,
    space_id: Option<u32>,
    len: usize,
    /// See [`Tokenizer::max_token_bytes`].
    max_token_bytes: usize,
}

fn read_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TokenizerError::BadJson {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a special-token entry that is either a string or `{"content": ...}`.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn added_from_object(id: u32, v: &Value) -> Option<AddedToken> {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    Some(AddedToken {
        content: v.get("content")?.as_str()?.to_string(),
        id,
        rstrip: flag("rstrip"),
        lstrip: flag("lstrip"),
        special: flag("special"),
    })
}

impl Tokenizer {
    /// Loads the tokenizer of a Hugging Face model folder: `tokenizer.model`
    /// (or `tokenizer.json`), `tokenizer_config.json`, `special_tokens_map.json`
    /// and `added_tokens.json`, then adds BLIP-3's three tokens.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let model_path = dir.join("tokenizer.model");
        let json_path = dir.join("tokenizer.json");
        let tokenizer_json = read_json(&json_path)?;
        let spm = if model_path.exists() {
            SentencePieceBpe::from_model_file(&model_path)?
        } else if let Some(json) = &tokenizer_json {
            SentencePieceBpe::from_tokenizer_json(json).map_err(|reason| {
                TokenizerError::BadJson {
                    path: json_path.clone(),
                    reason,
                }
            })?
        } else {
            return Err(TokenizerError::Missing(dir.to_path_buf()));
        };
        let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special_map = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);

        // Added tokens with flags: tokenizer_config.json, else tokenizer.json, else added_tokens.json.
        let mut added: Vec<AddedToken> = Vec::new();
        if let Some(map) = config
            .get("added_tokens_decoder")
            .and_then(Value::as_object)
        {
            for (id, v) in map {
                if let Some(tok) = id
                    .parse::<u32>()
                    .ok()
                    .and_then(|id| added_from_object(id, v))
                {
                    added.push(tok);
                }
            }
        } else if let Some(list) = tokenizer_json
            .as_ref()
            .and_then(|j| j.get("added_tokens"))
            .and_then(Value::as_array)
        {
            for v in list {
                let id = v
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                if let Some(tok) = id.and_then(|id| added_from_object(id, v)) {
                    added.push(tok);
                }
            }
        } else if let Some(map) = read_json(&dir.join("added_tokens.json"))?
            .as_ref()
            .and_then(Value::as_object)
        {
            for (content, id) in map {
                if let Some(id) = id.as_u64().and_then(|i| u32::try_from(i).ok()) {
                    added.push(AddedToken {
                        content: content.clone(),
                        id,
                        rstrip: false,
                        lstrip: false,
                        special: true,
                    });
                }
            }
        }
        added.sort_by_key(|t| t.id);

        let lookup = |key: &str, default: &str| -> String {
            special_map
                .get(key)
                .and_then(token_content)
                .or_else(|| config.get(key).and_then(token_content))
                .unwrap_or_else(|| default.to_string())
        };
        let named = [
            lookup("bos_token", "<s>"),
            lookup("eos_token", "<|endoftext|>"),
            lookup("unk_token", "<unk>"),
            lookup("pad_token", "<pad>"),
        ];
        let add_bos = config
            .get("add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Ok(Self::assemble(spm, added, &named, add_bos))
    }

    /// Builds the tokenizer from its parts and appends the BLIP-3 tokens the way
    /// `update_special_tokens` does (next free ids, special, no strip flags).
    fn assemble(
        spm: SentencePieceBpe,
        mut added: Vec<AddedToken>,
        named: &[String; 4],
        add_bos: bool,
    ) -> Self {
        let mut len = added
            .iter()
            .map(|t| t.id as usize + 1)
            .max()
            .unwrap_or(0)
            .max(spm.len());
        for extra in BLIP3_EXTRA_TOKENS {
            if !added.iter().any(|t| t.content == extra) {
                added.push(AddedToken {
                    content: extra.to_string(),
                    id: len as u32,
                    rstrip: false,
                    lstrip: false,
                    special: true,
                });
                len += 1;
            }
        }
        let id_of = |content: &str| -> Option<u32> {
            added
                .iter()
                .find(|t| t.content == content)
                .map(|t| t.id)
                .or_else(|| spm.piece_id(content))
                .or_else(|| (0..spm.len() as u32).find(|&i| spm.piece(i) == Some(content)))
        };
        let mut special_contents: HashSet<String> = named.iter().cloned().collect();
        special_contents.extend(BLIP3_EXTRA_TOKENS.iter().map(|s| s.to_string()));
        let special_ids = special_contents.iter().filter_map(|c| id_of(c)).collect();
        let bos_id = id_of(&named[0]).unwrap_or(1);
        let space_id = spm.piece_id(&SPACE_MARKER.to_string());
        // Input bytes per piece: each `▁` stands for one space.
        let input_bytes = |piece: &str| piece.replace(SPACE_MARKER, " ").len();
        let max_token_bytes = (0..spm.len() as u32)
            .filter_map(|i| spm.piece(i))
            .map(input_bytes)
            .chain(added.iter().map(|t| t.content.len()))
            .max()
            .unwrap_or(1)
            .max(1);
        Self {
            spm,
            added,
            special_ids,
            special_contents,
            bos_id,
            add_bos,
            space_id,
            len,
            max_token_bytes,
        }
    }

    /// `len(tokenizer)` in Python terms: 32015 for BLIP-3.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false for a loaded tokenizer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Id of the beginning-of-sequence token.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// Id of an added token or vocabulary piece by its text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added
            .iter()
            .find(|t| t.content == token)
            .map(|t| t.id)
            .or_else(|| self.spm.piece_id(token))
    }

    /// Encodes `text` with the slow-tokenizer rules; BOS is prepended when
    /// `add_special_tokens` is set and the tokenizer config asks for it.
    /// Every added token in `text` is recognised (template text); for
    /// prompts holding clients' text use [`Self::encode_marked`].
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Vec<u32> {
        self.encode_marked(
            &MarkedText::of(TextKind::Template, text),
            add_special_tokens,
        )
    }

    /// [`Self::encode`] on text whose parts say which added tokens they may
    /// contain ([`TextKind`]): in plain parts none is recognised, in raw
    /// parts all but the image markers. Text without such tokens gives the
    /// same ids as [`Self::encode`] of the joined string.
    pub fn encode_marked(&self, text: &MarkedText, add_special_tokens: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        if add_special_tokens && self.add_bos {
            ids.push(self.bos_id);
        }
        if text.is_empty() {
            return ids;
        }
        let body_start = ids.len();
        // Rules 1–2: literal `▁` becomes a space, then one `▁` is prepended.
        // Built part by part so that each part keeps its kind at its new
        // offsets (the replacement shortens the text).
        let mut prepared = MarkedText::new();
        prepared.template(&SPACE_MARKER.to_string());
        for (part, kind) in text.parts() {
            prepared.push(kind, &part.replace(SPACE_MARKER, " "));
        }
        let allowed = |pos: usize, index: usize| {
            let token = &self.added[index];
            match prepared.kind_of(pos..pos + token.content.len()) {
                Some(TextKind::Template) => true,
                Some(TextKind::Raw) => !IMAGE_MARKERS.contains(&token.content.as_str()),
                Some(TextKind::Plain) | None => false,
            }
        };
        let segments = split_on_added_where(prepared.as_str(), &self.added, allowed);
        let mut second_is_special = false;
        for (i, seg) in segments.iter().enumerate() {
            match seg {
                Segment::Text(t) => {
                    // Rule 4: no dummy prefix; spaces become `▁`.
                    let escaped = t.replace(' ', &SPACE_MARKER.to_string());
                    self.spm.encode_escaped(&escaped, &mut ids);
                }
                Segment::Token(index) => {
                    let token = &self.added[*index];
                    if i == 1 && ids.len() == body_start + 1 {
                        second_is_special = self.special_contents.contains(&token.content);
                    }
                    ids.push(token.id);
                }
            }
        }
        // Rule 5: a lone leading `▁` before a named special token is dropped.
        if second_is_special && Some(ids[body_start]) == self.space_id {
            ids.remove(body_start);
        }
        ids
    }

    /// The most bytes of input text one id can stand for (`▁` counted as the
    /// one space it encodes): a text of `b` bytes needs at least
    /// `b / max_token_bytes()` ids, which bounds a prompt's length before
    /// tokenizing it.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Decodes ids to text. With `skip_special_tokens`, named special tokens
    /// (bos/eos/unk/pad and the BLIP-3 tokens) are dropped; other added tokens
    /// such as `<|end|>` are rendered literally, as Python does.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut out = String::new();
        let mut run: Vec<u8> = Vec::new();
        let mut first = true;
        for &id in ids {
            if skip_special_tokens && self.special_ids.contains(&id) {
                continue;
            }
            if let Some(token) = self.added.iter().find(|t| t.id == id) {
                out.push_str(&String::from_utf8_lossy(&run));
                run.clear();
                out.push_str(&token.content);
            } else {
                let before = run.len();
                self.spm.push_piece_bytes(id, &mut run);
                // The prefix space the encoder added is not part of the text.
                if first && run.len() > before && run[before] == b' ' {
                    run.remove(before);
                }
            }
            first = false;
        }
        out.push_str(&String::from_utf8_lossy(&run));
        out
    }

    /// Decodes generated ids the way the model card does: skip special tokens and
    /// keep only the text before the first `<|end|>`.
    pub fn decode_answer(&self, ids: &[u32]) -> String {
        let text = self.decode(ids, true);
        match text.split_once("<|end|>") {
            Some((head, _)) => head.to_string(),
            None => text,
        }
    }
}
