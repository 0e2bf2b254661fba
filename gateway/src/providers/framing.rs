//! The framing of streamed answers: OpenAI's server-sent events
//! (`data: {json}\n\n` ... `data: [DONE]\n\n`), which every stream the
//! gateway answers with is, and the line splitting that reads Ollama's
//! NDJSON and Anthropic's SSE.

use axum::body::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;

/// A stream of bytes as a provider's body, or an answer, arrives.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// The event that ends an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One server-sent event carrying `value` as JSON.
pub fn event(value: &impl Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    // The gateway's own types always serialize.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The data of an SSE line (`data: ...`), if it is one.
pub fn data_of(line: &str) -> Option<&str> {
    line.strip_prefix("data:").map(str::trim)
}

/// Rewrites every line end of a byte stream to LF, however its chunks
/// fall: SSE ends a line at CRLF, LF or a lone CR, and a client reads all
/// three, so whatever reads a provider's stream must too.
#[derive(Debug, Default)]
pub struct LineEnds {
    /// The last byte seen was a CR: an LF right after it ends no new line.
    after_cr: bool,
}

impl LineEnds {
    /// `chunk` with LF line ends; the same bytes (no copy) when it has no
    /// CR and the chunk before did not end in one.
    pub fn to_lf(&mut self, chunk: Bytes) -> Bytes {
        if !self.after_cr && memchr::memchr(b'\r', &chunk).is_none() {
            return chunk;
        }
        let mut out = Vec::with_capacity(chunk.len());
        for &b in chunk.iter() {
            match b {
                b'\r' => out.push(b'\n'),
                b'\n' if self.after_cr => {}
                _ => out.push(b),
            }
            self.after_cr = b == b'\r';
        }
        Bytes::from(out)
    }
}

/// Splits a byte stream into lines (without their line ends, which may be
/// CRLF, LF or CR), however its chunks fall.
pub fn lines(
    upstream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> BoxStream<'static, std::io::Result<String>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut ends = LineEnds::default();
    upstream
        .map_ok(move |bytes| {
            buf.extend_from_slice(&ends.to_lf(bytes));
            let mut out = Vec::new();
            while let Some(i) = memchr::memchr(b'\n', &buf) {
                let line: Vec<u8> = buf.drain(..=i).collect();
                out.push(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            futures_util::stream::iter(out.into_iter().map(Ok))
        })
        .try_flatten()
        .boxed()
}

/// Translates a provider's stream, line by line, into OpenAI events:
/// `translate` turns each line into the events it stands for (none, one
/// or more).
pub fn translate_lines<F>(
    upstream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    mut translate: F,
) -> ByteStream
where
    F: FnMut(&str) -> Vec<Bytes> + Send + 'static,
{
    lines(upstream)
        .map_ok(move |line| futures_util::stream::iter(translate(&line).into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_whole_however_the_chunks_fall() {
        let chunks = [
            "{\"a\"",
            ":1}\n{\"b\":2}\r",
            "\n\n{\"c\"",
            ":3}\r{\"d\":4}\n",
        ];
        let upstream =
            futures_util::stream::iter(chunks.map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
        let got: Vec<String> = lines(upstream).try_collect().await.unwrap();
        assert_eq!(
            got,
            ["{\"a\":1}", "{\"b\":2}", "", "{\"c\":3}", "{\"d\":4}"]
        );
    }

    #[test]
    fn an_event_is_one_data_line() {
        assert_eq!(event(&serde_json::json!({"a": 1})), "data: {\"a\":1}\n\n");
        assert_eq!(data_of("data: [DONE]"), Some("[DONE]"));
        assert_eq!(data_of("event: ping"), None);
    }
}
