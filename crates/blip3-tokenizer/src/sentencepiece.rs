//! SentencePiece BPE: vocabulary loading and score-ordered merging with byte fallback.
//!
//! This mirrors what `sentencepiece`'s `bpe_model.cc` does for a model with the
//! `identity` normalizer: the (already escaped) text is split into characters, and
//! the adjacent pair whose concatenation is a vocabulary piece with the highest
//! score is merged, leftmost first on ties, until no pair is left. Symbols that are
//! not pieces are emitted as `<0xXX>` byte pieces.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use crate::proto::{Field, Reader};
use crate::TokenizerError;

/// The SentencePiece whitespace marker `▁` (U+2581).
pub const SPACE_MARKER: char = '\u{2581}';

/// What kind of piece an id is (SentencePiece's `ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// An ordinary piece that takes part in merging.
    Normal,
    /// The unknown piece (`<unk>`).
    Unknown,
    /// A control piece such as `<s>`; never produced from text.
    Control,
    /// A user-defined piece, matched whole in the input.
    UserDefined,
    /// A piece excluded from merging.
    Unused,
    /// A byte-fallback piece `<0xXX>`.
    Byte,
}

impl PieceKind {
    fn from_proto(value: u64) -> Self {
        match value {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// A SentencePiece BPE vocabulary: pieces, their merge scores and kinds.
#[derive(Debug, Clone)]
pub struct SentencePieceBpe {
    pieces: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<PieceKind>,
    /// Pieces that may be the result of a merge (Normal and UserDefined).
    mergeable: HashMap<String, u32>,
    user_defined: Vec<(String, u32)>,
    byte_ids: [Option<u32>; 256],
    unk_id: u32,
}

impl SentencePieceBpe {
    /// Reads the pieces of a SentencePiece `tokenizer.model` file.
    pub fn from_model_file(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_model_bytes(&bytes).map_err(|reason| TokenizerError::BadModel {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a serialized SentencePiece `ModelProto`.
    pub fn from_model_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut entries = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some((number, field)) = reader.next_field()? {
            // Field 1 = repeated SentencePiece pieces; trainer/normalizer specs are
            // not needed (the slow-tokenizer rules fix how text is prepared).
            if let (1, Field::Bytes(msg)) = (number, field) {
                let mut piece = None;
                let mut score = 0.0f32;
                let mut kind = PieceKind::Normal;
                let mut inner = Reader::new(msg);
                while let Some((n, f)) = inner.next_field()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => {
                            piece = Some(
                                String::from_utf8(b.to_vec())
                                    .map_err(|_| "piece is not UTF-8".to_string())?,
                            )
                        }
                        (2, Field::Fixed32(bits)) => score = f32::from_bits(bits),
                        (3, Field::Varint(v)) => kind = PieceKind::from_proto(v),
                        _ => {}
                    }
                }
                let piece = piece.ok_or("a piece has no text")?;
                entries.push((piece, score, kind));
            }
        }
        if entries.is_empty() {
            return Err("no pieces found".into());
        }
        Self::from_entries(entries)
    }

    /// Builds the vocabulary from a `tokenizer.json` BPE model (fallback when
    /// `tokenizer.model` is absent). Merge rank stands in for the score: earlier
    /// merges win, which is how the fast tokenizer was converted from the scores.
    pub fn from_tokenizer_json(json: &serde_json::Value) -> Result<Self, String> {
        let model = json.get("model").ok_or("no \"model\" section")?;
        if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
            return Err("model type is not BPE".into());
        }
        let vocab = model
            .get("vocab")
            .and_then(|v| v.as_object())
            .ok_or("no model.vocab map")?;
        let size = vocab
            .values()
            .filter_map(|v| v.as_u64())
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut entries: Vec<(String, f32, PieceKind)> =
            vec![(String::new(), f32::NEG_INFINITY, PieceKind::Unused); size];
        for (piece, id) in vocab {
            let id = id.as_u64().ok_or("vocab id is not an integer")? as usize;
            let kind = if is_byte_piece(piece).is_some() {
                PieceKind::Byte
            } else if piece == "<unk>" {
                PieceKind::Unknown
            } else if piece == "<s>" || piece == "</s>" {
                PieceKind::Control
            } else {
                PieceKind::Normal
            };
            entries[id] = (piece.clone(), f32::NEG_INFINITY, kind);
        }
        let index: HashMap<&str, usize> = vocab
            .iter()
            .filter_map(|(p, id)| Some((p.as_str(), id.as_u64()? as usize)))
            .collect();
        let merges = model
            .get("merges")
            .and_then(|m| m.as_array())
            .ok_or("no model.merges list")?;
        let mut merged_scores = Vec::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (a, b) = match merge {
                serde_json::Value::String(s) => s.split_once(' ').ok_or("bad merge string")?,
                serde_json::Value::Array(parts) if parts.len() == 2 => (
                    parts[0].as_str().ok_or("bad merge pair")?,
                    parts[1].as_str().ok_or("bad merge pair")?,
                ),
                _ => return Err("bad merge entry".into()),
            };
            let merged = format!("{a}{b}");
            if let Some(&id) = index.get(merged.as_str()) {
                merged_scores.push((id, -(rank as f32)));
            }
        }
        for (id, score) in merged_scores {
            if entries[id].1 == f32::NEG_INFINITY {
                entries[id].1 = score;
            }
        }
        Self::from_entries(entries)
    }

    fn from_entries(entries: Vec<(String, f32, PieceKind)>) -> Result<Self, String> {
        let mut pieces = Vec::with_capacity(entries.len());
        let mut scores = Vec::with_capacity(entries.len());
        let mut kinds = Vec::with_capacity(entries.len());
        let mut mergeable = HashMap::with_capacity(entries.len());
        let mut user_defined = Vec::new();
        let mut byte_ids = [None; 256];
        let mut unk_id = None;
        for (id, (piece, score, kind)) in entries.into_iter().enumerate() {
            let id32 = u32::try_from(id).map_err(|_| "vocabulary too large")?;
            match kind {
                PieceKind::Normal => {
                    mergeable.insert(piece.clone(), id32);
                }
                PieceKind::UserDefined => {
                    mergeable.insert(piece.clone(), id32);
                    user_defined.push((piece.clone(), id32));
                }
                PieceKind::Byte => {
                    if let Some(b) = is_byte_piece(&piece) {
                        byte_ids[b as usize] = Some(id32);
                    }
                }
                PieceKind::Unknown => unk_id = unk_id.or(Some(id32)),
                PieceKind::Control | PieceKind::Unused => {}
            }
            pieces.push(piece);
            scores.push(score);
            kinds.push(kind);
        }
        // Longest user-defined piece first, so prefix matching is greedy.
        user_defined.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Self {
            pieces,
            scores,
            kinds,
            mergeable,
            user_defined,
            byte_ids,
            unk_id: unk_id.ok_or("vocabulary has no <unk> piece")?,
        })
    }

    /// Number of pieces (the base vocabulary size, 32000 for Phi-3).
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// True when the vocabulary has no pieces.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The text of piece `id`, if it exists.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The kind of piece `id`, if it exists.
    pub fn kind(&self, id: u32) -> Option<PieceKind> {
        self.kinds.get(id as usize).copied()
    }

    /// Id of a mergeable (normal or user-defined) piece.
    pub fn piece_id(&self, piece: &str) -> Option<u32> {
        self.mergeable.get(piece).copied()
    }

    /// Encodes already-escaped text (spaces replaced by `▁`, no dummy prefix added).
    pub fn encode_escaped(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        // Initial symbols: user-defined pieces matched whole, otherwise one char each.
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            let len = self
                .user_defined
                .iter()
                .find(|(p, _)| rest.starts_with(p.as_str()))
                .map(|(p, _)| p.len())
                .unwrap_or_else(|| rest.chars().next().map_or(1, char::len_utf8));
            spans.push((pos, pos + len));
            pos += len;
        }
        let n = spans.len();
        // Doubly linked list over the symbols; `None` marks a merged-away symbol.
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut next: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();
        let mut alive = vec![true; n];

        let mut agenda = BinaryHeap::new();
        let push_pair = |agenda: &mut BinaryHeap<Candidate>, spans: &[(usize, usize)], l, r| {
            let (start, _) = spans[l];
            let (_, end) = spans[r];
            if let Some(&id) = self.mergeable.get(&text[start..end]) {
                agenda.push(Candidate {
                    score: self.scores[id as usize],
                    left: l,
                    right: r,
                    len: end - start,
                });
            }
        };
        for i in 0..n.saturating_sub(1) {
            push_pair(&mut agenda, &spans, i, i + 1);
        }
        while let Some(c) = agenda.pop() {
            // Skip stale candidates whose symbols changed since they were queued.
            if !alive[c.left] || !alive[c.right] || next[c.left] != Some(c.right) {
                continue;
            }
            if spans[c.right].1 - spans[c.left].0 != c.len {
                continue;
            }
            spans[c.left].1 = spans[c.right].1;
            alive[c.right] = false;
            next[c.left] = next[c.right];
            if let Some(nr) = next[c.right] {
                prev[nr] = Some(c.left);
            }
            if let Some(p) = prev[c.left] {
                push_pair(&mut agenda, &spans, p, c.left);
            }
            if let Some(nr) = next[c.left] {
                push_pair(&mut agenda, &spans, c.left, nr);
            }
        }
        let mut cur = Some(0);
        while let Some(i) = cur {
            let (start, end) = spans[i];
            let piece = &text[start..end];
            match self.mergeable.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.push(self.byte_ids[b as usize].unwrap_or(self.unk_id));
                    }
                }
            }
            cur = next[i];
        }
    }

    /// Appends the raw bytes piece `id` stands for (`▁` becomes a space, byte
    /// pieces become their byte). Control and unknown pieces add nothing.
    pub fn push_piece_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let Some(piece) = self.piece(id) else { return };
        match self.kinds[id as usize] {
            PieceKind::Byte => {
                if let Some(b) = is_byte_piece(piece) {
                    out.push(b);
                }
            }
            PieceKind::Control | PieceKind::Unknown => {}
            _ => {
                for ch in piece.chars() {
                    if ch == SPACE_MARKER {
                        out.push(b' ');
                    } else {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
    }
}

/// `Some(byte)` if `piece` is a byte-fallback piece such as `<0x0A>`.
fn is_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A queued merge of two adjacent symbols.
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged piece, to detect stale entries.
    len: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Higher score first; on equal scores the leftmost pair first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
