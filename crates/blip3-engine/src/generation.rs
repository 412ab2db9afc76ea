//! The reference's stop rules (spec §12); token choice is in `sampling`.

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced `<|end|>` (the model card's stopping criterion).
    End(u32),
    /// The model produced the EOS id of `generation_config.json`.
    Eos(u32),
    /// `max_new_tokens` ids were generated.
    MaxNewTokens,
}

impl StopReason {
    /// Stable label used in dumps and JSON: `end_32007`, `eos_32000`, `max_new_tokens`.
    pub fn label(&self) -> String {
        match self {
            Self::End(id) => format!("end_{id}"),
            Self::Eos(id) => format!("eos_{id}"),
            Self::MaxNewTokens => "max_new_tokens".into(),
        }
    }
}

/// The ids that end generation, with the reason each one gives.
#[derive(Debug, Clone)]
pub struct StopRule {
    /// `<|end|>` (32007).
    pub end_id: Option<u32>,
    /// EOS ids from `generation_config.json` (32000).
    pub eos_ids: Vec<u32>,
}

impl StopRule {
    /// The reason `id` stops generation, if it does.
    pub fn check(&self, id: u32) -> Option<StopReason> {
        if self.end_id == Some(id) {
            Some(StopReason::End(id))
        } else if self.eos_ids.contains(&id) {
            Some(StopReason::Eos(id))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_rule_labels() {
        let rule = StopRule {
            end_id: Some(32007),
            eos_ids: vec![32000],
        };
        assert_eq!(rule.check(32007).unwrap().label(), "end_32007");
        assert_eq!(rule.check(32000).unwrap().label(), "eos_32000");
        assert_eq!(rule.check(5), None);
        assert_eq!(StopReason::MaxNewTokens.label(), "max_new_tokens");
    }
}
