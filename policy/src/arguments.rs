//! Tool-call arguments as the policy evaluates them: [`ToolArguments`]
//! parses the text a model or client sent exactly once, and keeps the
//! canonical JSON of what was evaluated (for the gateway to forward) and
//! its digest (for approvals and the audit).
//!
//! Arguments must be a JSON object. Anything else — a string, an array,
//! `null`, or text that is not JSON at all (`NaN`, a truncated object) —
//! is never evaluated as `{}`: the call is denied `tool.arguments_invalid`,
//! because a condition like `has(args.to) && ...` would be false on `{}`
//! while a lenient parser downstream still reads `to`.

use crate::fingerprint::hex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// Why arguments cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsError {
    /// The text is not JSON (serde_json's message: what and where, never
    /// the content).
    #[error("the arguments are not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("the arguments are a JSON {0}, not an object")]
    NotAnObject(&'static str),
}

/// A tool call's arguments, parsed once.
///
/// Either a JSON object — evaluated, with [`Self::canonical_json`] (what
/// the gateway forwards, so a client runs exactly what was decided) — or
/// [`Self::error`], and every decision on it is `tool.arguments_invalid`.
/// [`Self::digest`] identifies either.
#[derive(Clone)]
pub struct ToolArguments {
    parsed: Result<Parsed, ArgumentsError>,
    digest: String,
}

#[derive(Clone)]
struct Parsed {
    /// Always a `Value::Object`.
    value: Value,
    canonical: String,
}

impl ToolArguments {
    /// From the raw text a model or client sent: OpenAI's
    /// `function.arguments` string, or a request body's `arguments` read
    /// as raw JSON. Empty (or whitespace-only) text means no arguments,
    /// `{}`: some providers send that for tools without parameters, and
    /// there is nothing in it a downstream parser could read differently.
    pub fn parse(raw: &str) -> Self {
        if raw.trim_matches(JSON_WHITESPACE).is_empty() {
            return Self::from_value(Value::Object(serde_json::Map::new()));
        }
        let node = match Parser::new(raw).document() {
            Ok(node) => node,
            Err(message) => {
                return Self {
                    parsed: Err(ArgumentsError::NotJson(message)),
                    digest: digest_of(raw),
                };
            }
        };
        let mut canonical = String::with_capacity(raw.len());
        node.write_canonical(&mut canonical);
        let digest = digest_of(&canonical);
        let parsed = match &node {
            Node::Object(_) => node
                .to_value()
                .map(|value| Parsed { value, canonical })
                .map_err(ArgumentsError::NotJson),
            other => Err(ArgumentsError::NotAnObject(other.json_type())),
        };
        Self { parsed, digest }
    }

    /// From JSON the caller has already parsed. A value that is not an
    /// object is invalid. Prefer [`Self::parse`] wherever the raw text is
    /// at hand: a `Value` has already rounded numbers a double cannot hold
    /// and kept only the last of a key given twice.
    pub fn from_value(value: Value) -> Self {
        let canonical = canonical_json(&value);
        let digest = digest_of(&canonical);
        let parsed = match &value {
            Value::Object(_) => Ok(Parsed { value, canonical }),
            other => Err(ArgumentsError::NotAnObject(json_type(other))),
        };
        Self { parsed, digest }
    }

    /// Whether the arguments are a JSON object the policy can evaluate.
    pub fn is_valid(&self) -> bool {
        self.parsed.is_ok()
    }

    /// Why the arguments cannot be evaluated, if they cannot.
    pub fn error(&self) -> Option<&ArgumentsError> {
        self.parsed.as_ref().err()
    }

    /// The evaluated object (`args` in CEL conditions), if valid.
    pub fn value(&self) -> Option<&Value> {
        self.parsed.as_ref().ok().map(|p| &p.value)
    }

    /// Canonical JSON of exactly what was evaluated (object keys sorted, no
    /// insignificant white space, strings escaped the one way serde_json
    /// writes them, numbers digit for digit as received), if valid: what
    /// the gateway forwards in place of the text it received. `None` when
    /// invalid — then nothing may be forwarded.
    ///
    /// CEL conditions see numbers as int, uint or double: one beyond those
    /// (an integer above 2^64, a decimal longer than a double holds) is
    /// compared as the nearest double, and forwarded and digested exactly.
    pub fn canonical_json(&self) -> Option<&str> {
        self.parsed.as_ref().ok().map(|p| p.canonical.as_str())
    }

    /// `sha256:` + hex SHA-256 of the canonical JSON (what approvals and the
    /// audit identify arguments by) — full precision: numbers are digested
    /// as written, never rounded through a double; for text that is not
    /// JSON at all, of the text as received.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl fmt::Debug for ToolArguments {
    // Arguments may hold anything (credentials, patient data): show their
    // digest and validity, never their content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolArguments")
            .field("digest", &self.digest)
            .field("error", &self.error())
            .finish()
    }
}

const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// How deep arrays and objects may nest (serde_json's own limit).
const MAX_DEPTH: usize = 128;

// === the strict parser behind ToolArguments::parse ===

/// JSON as received, before anything is rounded: numbers keep their text.
enum Node<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(String),
    Array(Vec<Node<'a>>),
    /// Members sorted by key, no key twice.
    Object(Vec<(String, Node<'a>)>),
}

impl Node<'_> {
    fn json_type(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "bool",
            Node::Number(_) => "number",
            Node::String(_) => "string",
            Node::Array(_) => "array",
            Node::Object(_) => "object",
        }
    }

    fn write_canonical(&self, out: &mut String) {
        match self {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Number(text) => out.push_str(text),
            Node::String(s) => write_string(s, out),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_canonical(out);
                }
                out.push(']');
            }
            Node::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write_canonical(out);
                }
                out.push('}');
            }
        }
    }

    /// The value CEL sees. Fails only on a number no double can hold.
    fn to_value(&self) -> Result<Value, String> {
        Ok(match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(text) => {
                Value::Number(number(text).ok_or_else(|| format!("number {text} is out of range"))?)
            }
            Node::String(s) => Value::String(s.clone()),
            Node::Array(items) => {
                Value::Array(items.iter().map(Node::to_value).collect::<Result<_, _>>()?)
            }
            Node::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.to_value()?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

/// A JSON number as serde_json would hold it: u64 or i64 when integral
/// and in range, else a finite double.
fn number(text: &str) -> Option<serde_json::Number> {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(u) = text.parse::<u64>() {
            return Some(u.into());
        }
        if let Ok(i) = text.parse::<i64>() {
            return Some(i.into());
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

/// A string the way serde_json writes it, so digests of plain arguments
/// are what they have always been.
fn write_string(s: &str, out: &mut String) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// RFC 8259 JSON, strictly: no NaN or Infinity, no trailing commas or
/// text, no lone surrogates, no raw control characters in strings, no
/// key twice in an object, at most [`MAX_DEPTH`] levels.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn document(mut self) -> Result<Node<'a>, String> {
        let node = self.value()?;
        self.whitespace();
        if self.pos < self.text.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(node)
    }

    /// `what` at line L column C (characters), never the content.
    fn error(&self, what: &str) -> String {
        let before = self.text.get(..self.pos).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{what} at line {line} column {column}")
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &str, node: Node<'a>) -> Result<Node<'a>, String> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(node)
        } else {
            Err(self.error("expected value"))
        }
    }

    fn value(&mut self) -> Result<Node<'a>, String> {
        self.whitespace();
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Node::String),
            Some(b't') => self.literal("true", Node::Bool(true)),
            Some(b'f') => self.literal("false", Node::Bool(false)),
            Some(b'n') => self.literal("null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected value")),
        }
    }

    fn nested(
        &mut self,
        parse: fn(&mut Self) -> Result<Node<'a>, String>,
    ) -> Result<Node<'a>, String> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        self.pos += 1; // the opening bracket
        let node = parse(self);
        self.depth -= 1;
        node
    }

    fn array(&mut self) -> Result<Node<'a>, String> {
        let mut items = Vec::new();
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Node<'a>, String> {
        let mut members = Vec::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            members.push((key, self.value()?));
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = members.windows(2).find(|w| w[0].0 == w[1].0) {
            // Parsers disagree on which one wins, so neither may.
            return Err(self.error(&format!("key {:?} given twice", pair[0].0)));
        }
        Ok(Node::Object(members))
    }

    fn number(&mut self) -> Result<Node<'a>, String> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos - from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return Err(self.error("invalid number")),
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if digits(&mut pos) == 0 {
                self.pos = pos;
                return Err(self.error("invalid number"));
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if digits(&mut pos) == 0 {
                self.pos = pos;
                return Err(self.error("invalid number"));
            }
        }
        self.pos = pos;
        if bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            // A leading zero followed by more digits: `01`.
            return Err(self.error("invalid number"));
        }
        Ok(Node::Number(&self.text[start..pos]))
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let plain = rest
                .bytes()
                .position(|b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or_else(|| self.error("EOF while parsing a string"))?;
            out.push_str(&rest[..plain]);
            self.pos += plain;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    out.push(c);
                }
                _ => return Err(self.error("control character in a string")),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err(self.error("lone leading surrogate in a string"));
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.error("lone leading surrogate in a string"));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                return char::from_u32(code)
                    .ok_or_else(|| self.error("lone trailing surrogate in a string"));
            }
            _ => return Err(self.error("invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn digest_of(text: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(text.as_bytes())))
}

/// Canonical JSON of a value: object keys sorted, no insignificant white
/// space.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

// === Arguments: what a ToolCall may carry ===

mod sealed {
    pub trait Sealed {}
    impl Sealed for serde_json::Value {}
    impl Sealed for super::ToolArguments {}
}

/// What [`crate::ToolCall::arguments`] may be: [`ToolArguments`] (parsed
/// from the text received: preferred) or a `serde_json::Value` the caller
/// already parsed. Either way, anything but a JSON object is denied
/// `tool.arguments_invalid`. Sealed: implemented for those two only.
pub trait Arguments: sealed::Sealed {
    /// The object to evaluate, or `None` when there is none.
    #[doc(hidden)]
    fn evaluated(&self) -> Option<&Value>;
}

impl Arguments for Value {
    fn evaluated(&self) -> Option<&Value> {
        self.is_object().then_some(self)
    }
}

impl Arguments for ToolArguments {
    fn evaluated(&self) -> Option<&Value> {
        self.value()
    }
}
