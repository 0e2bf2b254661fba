//! The audit event: one row per decision. It has no field for a
//! credential, and the raw prompt and raw arguments are only filled in when
//! a policy explicitly asks (`audit.prompts: Full`, `audit.arguments:
//! Full|Redacted`).

use crate::decision::AuditDecision;
use crate::key::AuditKey;
use hmac::Hmac;
use hmac::digest::{KeyInit, Mac};
use jiff::Timestamp;
use palisade_policy::{Decision, HeldCall};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A `POST /v1/tool-calls` decision or a tool call proposed in chat.
    ToolCall,
    /// A chat request's routing (or refusal).
    Chat,
    /// An embeddings request's routing (or refusal).
    Embedding,
    /// The tokens of a streamed answer, known once it ended (a whole
    /// answer's are in its chat row).
    Usage,
    /// An Approval's outcome (approved, denied, expired, consumed).
    Approval,
    /// What happened when Palisade ran an allowed call itself.
    ToolResult,
    /// A security alert over an agent's decisions (decision `Alert`).
    SecurityAlert,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToolCall => "tool_call",
            Self::Chat => "chat",
            Self::Embedding => "embedding",
            Self::Usage => "usage",
            Self::Approval => "approval",
            Self::ToolResult => "tool_result",
            Self::SecurityAlert => "security_alert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tool_call" => Some(Self::ToolCall),
            "chat" => Some(Self::Chat),
            "embedding" => Some(Self::Embedding),
            "usage" => Some(Self::Usage),
            "approval" => Some(Self::Approval),
            "tool_result" => Some(Self::ToolResult),
            "security_alert" => Some(Self::SecurityAlert),
            _ => None,
        }
    }
}

/// One decision, as the audit keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Unique and time-ordered (UUIDv7); inserts are idempotent on it.
    pub id: String,
    pub time: Timestamp,
    pub kind: EventKind,
    pub request_id: String,
    pub namespace: String,
    pub agent: String,
    pub policy: Option<String>,
    pub policy_generation: Option<i64>,
    pub rule: Option<String>,
    /// `Allow`, `Deny`, `RequireApproval`, or an approval phase.
    pub decision: String,
    /// `false` for `Audit` (dry-run) enforcement.
    pub enforced: bool,
    pub reason_codes: Vec<String>,
    pub tool: Option<String>,
    pub argument_digest: Option<String>,
    /// Only when the policy's `audit.arguments` asks for them.
    pub arguments: Option<serde_json::Value>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt_sha256: Option<String>,
    pub prompt_chars: Option<i64>,
    /// Only when the policy's `audit.prompts` is `Full`.
    pub prompt_text: Option<String>,
    pub upstream_status: Option<i64>,
    pub latency_us: Option<i64>,
    pub approval: Option<String>,
    pub decided_by: Option<String>,
    /// Tokens the provider reported for a routed request (prompt, answer,
    /// and of the prompt those read from its cache). Left out of the JSON
    /// (and so of the chain hash) when unknown, as in rows written before
    /// they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<i64>,
    /// A tool Palisade ran: the SHA-256 of its result as handed on, and
    /// the bytes the tool produced. Left out when empty, like the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<i64>,
    /// A security alert: what it saw (never an argument's value). Left
    /// out when empty, like the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// A new event with a fresh id, stamped now.
    pub fn new(
        kind: EventKind,
        request_id: &str,
        namespace: &str,
        agent: &str,
        decision: AuditDecision,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            time: Timestamp::now(),
            kind,
            request_id: request_id.to_owned(),
            namespace: namespace.to_owned(),
            agent: agent.to_owned(),
            policy: None,
            policy_generation: None,
            rule: None,
            decision: decision.as_str().to_owned(),
            enforced: true,
            reason_codes: Vec::new(),
            tool: None,
            argument_digest: None,
            arguments: None,
            provider: None,
            model: None,
            prompt_sha256: None,
            prompt_chars: None,
            prompt_text: None,
            upstream_status: None,
            latency_us: None,
            approval: None,
            decided_by: None,
            input_tokens: None,
            output_tokens: None,
            cached_tokens: None,
            result_sha256: None,
            result_bytes: None,
            detail: None,
        }
    }

    /// An event for a policy decision, with its policy, rule, outcome and
    /// reason code filled in.
    pub fn from_decision(
        kind: EventKind,
        request_id: &str,
        namespace: &str,
        agent: &str,
        d: &Decision,
    ) -> Self {
        let mut e = Self::new(kind, request_id, namespace, agent, d.outcome.into());
        e.policy = d.policy.as_ref().map(|p| p.name.clone());
        e.policy_generation = d.generation();
        e.rule = d.rule.clone();
        e.enforced = d.enforced;
        e.reason_codes = vec![d.reason_code.as_str().to_owned()];
        e
    }

    /// Sets the `decision` column.
    pub fn set_decision(&mut self, decision: AuditDecision) {
        self.decision = decision.as_str().to_owned();
    }

    /// An approval outcome (`approval.approved`, `approval.consumed`, ...):
    /// kind `approval`, the held call, the approval's name, and who decided
    /// or used it.
    pub fn approval_outcome(a: &ApprovalFacts<'_>, decision: AuditDecision, code: &str) -> Self {
        let call = a.call;
        let mut e = Self::new(
            EventKind::Approval,
            &call.request_id,
            a.namespace,
            &call.agent,
            decision,
        );
        e.policy = Some(call.policy.clone());
        e.policy_generation = Some(call.policy_generation);
        e.rule = call.rule.clone();
        e.reason_codes = vec![code.to_owned()];
        e.tool = Some(call.tool.clone());
        e.argument_digest = Some(call.arguments_digest.clone());
        e.approval = Some(a.name.to_owned());
        e.decided_by = a.actor.map(str::to_owned);
        e
    }
}

/// What an approval-outcome row says about the approval.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub call: &'a HeldCall,
    /// Who decided (for decisions) or which gateway used it (consumption).
    pub actor: Option<&'a str>,
}

/// An event with its place in its writer's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainedEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The writer (one per process start) whose chain this row is in.
    pub writer: String,
    /// 1, 2, 3, ... within the writer.
    pub seq: i64,
    /// `hash` of the writer's previous row. For seq 1: `genesis`, or a
    /// link to the newest row in the database when the writer started,
    /// `WRITER:SEQ:HASH` (see [`link_to`]).
    pub prev_hash: String,
    /// The row's hash over the previous hash, the writer, seq and the
    /// event: `hmac-sha256:HEX` under the audit key, or (no key) the
    /// plain SHA-256 as lowercase hex.
    pub hash: String,
}

/// The previous hash of a writer's first row when it links to nothing.
pub const GENESIS: &str = "genesis";

/// How a keyed row's hash starts.
pub const KEYED_PREFIX: &str = "hmac-sha256:";

/// A row another writer's chain can start from: the newest row in the
/// database when that writer started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub writer: String,
    pub seq: i64,
    pub hash: String,
}

/// The `prev_hash` of a first row that follows `head`: it names the row
/// (so that `verify` can say which rows went missing) and carries its
/// hash; the row's own (keyed) hash covers both.
pub fn link_to(head: &ChainHead) -> String {
    format!("{}:{}:{}", head.writer, head.seq, head.hash)
}

/// The row a first row's `prev_hash` links to, if it is a link.
pub fn parse_link(prev_hash: &str) -> Option<ChainHead> {
    let mut parts = prev_hash.splitn(3, ':');
    let writer = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let hash = parts.next()?;
    Some(ChainHead {
        writer: writer.to_owned(),
        seq,
        hash: hash.to_owned(),
    })
}

/// `io::Write` into a running hash or MAC.
struct HashSink<'a, F: FnMut(&[u8])>(&'a mut F);

impl<F: FnMut(&[u8])> std::io::Write for HashSink<'_, F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (self.0)(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Feeds the hashed input of one row to `update`: the previous hash, the
/// writer and seq, one per line, then the event's JSON.
fn hash_input(
    mut update: impl FnMut(&[u8]),
    event: &AuditEvent,
    writer: &str,
    seq: i64,
    prev_hash: &str,
) {
    update(prev_hash.as_bytes());
    update(b"\n");
    update(writer.as_bytes());
    update(b"\n");
    // Written straight into the hash: no buffers. Neither can fail (the
    // sink cannot, and an event has only string map keys).
    let mut sink = HashSink(&mut update);
    let _ = writeln!(sink, "{seq}");
    // Struct fields serialize in declaration order, and `arguments` is a
    // BTreeMap-backed value, so this is canonical for a given event.
    let _ = serde_json::to_writer(&mut sink, event);
}

/// The unkeyed chain hash of one row (rows written without a key, and
/// by releases before the key): lowercase hex SHA-256.
pub fn chain_hash(event: &AuditEvent, writer: &str, seq: i64, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    hash_input(|b| h.update(b), event, writer, seq, prev_hash);
    crate::key::hex(&h.finalize())
}

/// The keyed chain hash of one row: `hmac-sha256:` and the lowercase hex
/// HMAC-SHA256 under `key` of the same input as [`chain_hash`].
pub fn keyed_chain_hash(
    key: &AuditKey,
    event: &AuditEvent,
    writer: &str,
    seq: i64,
    prev_hash: &str,
) -> String {
    // Any key length is valid for HMAC.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    hash_input(|b| mac.update(b), event, writer, seq, prev_hash);
    format!(
        "{KEYED_PREFIX}{}",
        crate::key::hex(&mac.finalize().into_bytes())
    )
}

/// The hash of a row as a writer with (or without) `key` writes it.
pub fn row_hash(
    key: Option<&AuditKey>,
    event: &AuditEvent,
    writer: &str,
    seq: i64,
    prev_hash: &str,
) -> String {
    match key {
        Some(key) => keyed_chain_hash(key, event, writer, seq, prev_hash),
        None => chain_hash(event, writer, seq, prev_hash),
    }
}

/// PostgreSQL's `text` cannot hold NUL, and a client can put one in
/// (a model name, a prompt): such a row would be refused, and with it
/// the whole batch, again and again from the spool.
fn scrub(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

impl AuditEvent {
    /// Replaces NUL characters with U+FFFD in every text field, before the
    /// event is hashed, so the row is stored, and verifies, as hashed.
    /// (`arguments` is stored as JSON text, where NUL is escaped.)
    fn scrub_nul(&mut self) {
        // Destructured, so a new text field cannot be forgotten here.
        let AuditEvent {
            id,
            time: _,
            kind: _,
            request_id,
            namespace,
            agent,
            policy,
            policy_generation: _,
            rule,
            decision,
            enforced: _,
            reason_codes,
            tool,
            argument_digest,
            arguments: _,
            provider,
            model,
            prompt_sha256,
            prompt_chars: _,
            prompt_text,
            upstream_status: _,
            latency_us: _,
            approval,
            decided_by,
            input_tokens: _,
            output_tokens: _,
            cached_tokens: _,
            result_sha256,
            result_bytes: _,
            detail,
        } = self;
        for field in [id, request_id, namespace, agent, decision] {
            scrub(field);
        }
        for field in [
            policy,
            rule,
            tool,
            argument_digest,
            provider,
            model,
            prompt_sha256,
            prompt_text,
            approval,
            decided_by,
            result_sha256,
            detail,
        ]
        .into_iter()
        .flatten()
        {
            scrub(field);
        }
        reason_codes.iter_mut().for_each(scrub);
    }
}

/// Assigns chain positions to events in order.
#[derive(Debug, Clone)]
pub struct Chain {
    writer: String,
    seq: i64,
    prev: String,
    key: Option<AuditKey>,
}

impl Chain {
    /// An unkeyed chain (plain SHA-256).
    pub fn new(writer: impl Into<String>) -> Self {
        Self::keyed(writer, None)
    }

    /// A chain whose rows are hashed with `key` (HMAC-SHA256), or plain
    /// SHA-256 without one.
    pub fn keyed(writer: impl Into<String>, key: Option<AuditKey>) -> Self {
        Self {
            writer: writer.into(),
            seq: 0,
            prev: GENESIS.to_owned(),
            key,
        }
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// Links this chain's first row to `head` (the newest row when the
    /// writer started), so that deleting the end of the earlier chain, or
    /// all of it, breaks this link. Only before the first row.
    pub fn follow(&mut self, head: &ChainHead) {
        if self.seq == 0 {
            self.prev = link_to(head);
        }
    }

    pub fn link(&mut self, mut event: AuditEvent) -> ChainedEvent {
        event.scrub_nul();
        self.seq += 1;
        let hash = row_hash(
            self.key.as_ref(),
            &event,
            &self.writer,
            self.seq,
            &self.prev,
        );
        ChainedEvent {
            event,
            writer: self.writer.clone(),
            seq: self.seq,
            prev_hash: std::mem::replace(&mut self.prev, hash.clone()),
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_links_each_row_to_the_previous_one() {
        let mut chain = Chain::new("w1");
        let a = chain.link(AuditEvent::new(
            EventKind::ToolCall,
            "r1",
            "ns",
            "agent",
            AuditDecision::Allow,
        ));
        let b = chain.link(AuditEvent::new(
            EventKind::ToolCall,
            "r2",
            "ns",
            "agent",
            AuditDecision::Deny,
        ));
        assert_eq!((a.seq, a.prev_hash.as_str()), (1, GENESIS));
        assert_eq!((b.seq, b.prev_hash.as_str()), (2, a.hash.as_str()));
        assert_eq!(b.hash, chain_hash(&b.event, "w1", 2, &a.hash));
        let mut edited = b.event.clone();
        edited.set_decision(AuditDecision::Allow);
        assert_ne!(chain_hash(&edited, "w1", 2, &a.hash), b.hash);
    }

    #[test]
    fn the_chain_hash_is_the_lowercase_hex_sha256_of_its_documented_input() {
        // Rows written by earlier releases must still verify: the input
        // and the encoding never change.
        let event = AuditEvent::new(EventKind::Chat, "r", "n", "a", AuditDecision::Allow);
        let mut input = b"prev\nw1\n7\n".to_vec();
        input.extend(serde_json::to_vec(&event).unwrap());
        let expected: String = Sha256::digest(&input)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(chain_hash(&event, "w1", 7, "prev"), expected);
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn a_keyed_chain_hash_is_the_hmac_of_the_same_input_and_a_follower_links_by_position() {
        use hmac::digest::{KeyInit, Mac};
        let key = AuditKey::from_bytes(&[7u8; 32]).unwrap();
        let event = AuditEvent::new(EventKind::Chat, "r", "n", "a", AuditDecision::Allow);
        let mut input = b"prev\nw1\n7\n".to_vec();
        input.extend(serde_json::to_vec(&event).unwrap());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(&input);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            keyed_chain_hash(&key, &event, "w1", 7, "prev"),
            format!("hmac-sha256:{expected}")
        );

        let head = ChainHead {
            writer: "w0".into(),
            seq: 41,
            hash: "hmac-sha256:ab".into(),
        };
        let mut chain = Chain::keyed("w1", Some(key.clone()));
        chain.follow(&head);
        let first = chain.link(event.clone());
        assert_eq!(first.prev_hash, "w0:41:hmac-sha256:ab");
        assert_eq!(parse_link(&first.prev_hash), Some(head.clone()));
        assert_eq!(
            first.hash,
            keyed_chain_hash(&key, &first.event, "w1", 1, &first.prev_hash)
        );
        chain.follow(&head);
        assert_eq!(
            chain.link(event).prev_hash,
            first.hash,
            "only before the first row"
        );
        assert_eq!(parse_link(GENESIS), None);
    }

    #[test]
    fn event_ids_are_unique_and_time_ordered() {
        let a = AuditEvent::new(EventKind::Chat, "r", "n", "a", AuditDecision::Allow);
        let b = AuditEvent::new(EventKind::Chat, "r", "n", "a", AuditDecision::Allow);
        assert_ne!(a.id, b.id);
        assert!(a.id < b.id);
    }
}
