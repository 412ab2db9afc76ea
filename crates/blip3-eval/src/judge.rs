//! LLM-judged benchmarks (MM-Vet, MathVista) through any OpenAI-compatible
//! chat-completions endpoint given by `--judge-url`. Off by default: without
//! a judge those benchmarks are reported as needing one.
//!
//! The grading prompt is blip3's own (the question, the ground truth with
//! MM-Vet's `<AND>` / `<OR>` meaning spelled out, the prediction; the judge
//! answers with a correctness in [0, 1]), not MM-Vet's or MathVista's
//! official few-shot prompts, so a judged number is comparable with
//! another judged run of this harness rather than with the model card's.
//! As in MM-Vet's grader, an unparsable reply is retried (5 tries, the
//! temperature rising by 0.5 each time) and scores 0 when every try fails.

use std::time::Duration;

use serde_json::{json, Value};

use crate::EvalError;

/// Tries per item before it scores 0.
pub const TRIES: usize = 5;

/// An OpenAI-compatible judge.
#[derive(Debug, Clone)]
pub struct Judge {
    /// Base URL (`http://host:port/v1` or the full `/chat/completions` URL).
    pub url: String,
    /// Model name sent in each request.
    pub model: String,
    /// Bearer token, if the endpoint needs one.
    pub api_key: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// The grading request's user text.
pub fn grading_prompt(question: &str, truth: &str, prediction: &str) -> String {
    format!(
        "Grade a model's answer to a question about an image.\n\
         In the ground truth, <AND> joins parts that must all be present and <OR> joins \
         alternatives of which one suffices.\n\n\
         Question: {question}\nGround truth: {truth}\nModel answer: {prediction}\n\n\
         Reply with one number between 0.0 (wrong) and 1.0 (fully correct), and nothing else."
    )
}

/// The first number in `reply`, if it lies in [0, 1].
pub fn parse_grade(reply: &str) -> Option<f64> {
    let start = reply.find(|c: char| c.is_ascii_digit())?;
    let rest = &reply[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value: f64 = rest[..end].trim_end_matches('.').parse().ok()?;
    (0.0..=1.0).contains(&value).then_some(value)
}

impl Judge {
    fn endpoint(&self) -> String {
        let base = self.url.trim_end_matches('/');
        if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        }
    }

    /// One chat completion; the reply's text.
    fn ask(&self, prompt: &str, temperature: f64) -> Result<String, EvalError> {
        let agent = ureq::AgentBuilder::new()
            .timeout(self.timeout)
            .redirects(0)
            .build();
        let mut request = agent.post(&self.endpoint());
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": 16,
        });
        let failed = |what: String| EvalError::Usage(format!("judge {}: {what}", self.endpoint()));
        let response = request.send_json(body).map_err(|e| match e {
            ureq::Error::Status(code, _) => failed(format!("HTTP status {code}")),
            ureq::Error::Transport(t) => failed(format!("{}", t.kind())),
        })?;
        let value: Value = response
            .into_json()
            .map_err(|_| failed("the reply is not JSON".into()))?;
        value
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| failed("no choices[0].message.content in the reply".into()))
    }

    /// The judge's grade for one answer, in [0, 1]. Unparsable replies are
    /// retried; an endpoint that cannot be reached is an error (the run
    /// stops rather than scoring every item 0).
    pub fn grade(&self, question: &str, truth: &str, prediction: &str) -> Result<f64, EvalError> {
        let prompt = grading_prompt(question, truth, prediction);
        for i in 0..TRIES {
            let reply = self.ask(&prompt, 0.5 * i as f64)?;
            if let Some(grade) = parse_grade(&reply) {
                return Ok(grade);
            }
        }
        Ok(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_are_the_first_number_in_range() {
        assert_eq!(parse_grade("0.7"), Some(0.7));
        assert_eq!(parse_grade("Score: 1.0."), Some(1.0));
        assert_eq!(parse_grade("1"), Some(1.0));
        assert_eq!(parse_grade("3 out of 5"), None);
        assert_eq!(parse_grade("correct"), None);
    }
}
