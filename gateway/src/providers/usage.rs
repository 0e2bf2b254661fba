//! Tokens a provider reported for one answer, read from each answer's
//! OpenAI-shaped `usage` (the translated providers' counts are carried
//! there): prompt, completion, and of the prompt those read from the
//! provider's cache (`prompt_tokens_details.cached_tokens`).

use super::ProviderReply;
use super::openai::Usage;
use axum::body::Bytes;
use serde::Deserialize;

/// Tokens of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
}

impl Tokens {
    /// The counts of an OpenAI `usage` object.
    pub fn of(usage: &Usage) -> Self {
        let cached = usage
            .rest
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Self {
            input: usage.prompt_tokens,
            output: usage.completion_tokens,
            cached,
        }
    }

    /// The `usage` of a JSON answer's bytes, read without building the
    /// rest of it.
    pub fn in_json(bytes: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Answer {
            usage: Option<Usage>,
        }
        let answer: Answer = serde_json::from_slice(bytes).ok()?;
        answer.usage.as_ref().map(Self::of)
    }
}

/// What a provider answered, as far as its tokens are known when the
/// answer arrives (a stream's are known at its end).
pub trait Metered {
    fn tokens(&self) -> Option<Tokens>;
}

impl Metered for ProviderReply {
    fn tokens(&self) -> Option<Tokens> {
        match self {
            ProviderReply::Completion(c) => c.usage.as_ref().map(Tokens::of),
            ProviderReply::Verbatim(bytes) => Tokens::in_json(bytes),
            ProviderReply::Stream(_) => None,
        }
    }
}

/// An embeddings answer (OpenAI's list JSON).
impl Metered for Bytes {
    fn tokens(&self) -> Option<Tokens> {
        Tokens::in_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_an_answer_with_its_cached_tokens() {
        let answer = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":100}}}"#;
        assert_eq!(
            Tokens::in_json(answer),
            Some(Tokens {
                input: 120,
                output: 30,
                cached: 100
            })
        );
        let embeddings =
            br#"{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            Tokens::in_json(embeddings).map(|t| (t.input, t.output)),
            Some((8, 0))
        );
        assert_eq!(Tokens::in_json(br#"{"id":"c"}"#), None);
    }
}
