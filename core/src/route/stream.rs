//! [`GameStream`]: one client-to-server TCP connection as the game writes it. Bytes go in, in
//! any split; one [`Verdict`] per framed packet comes out, in order, with its route and the
//! exact bytes to forward to the server. The decision path does not allocate: the connection's
//! buffer is allocated once, and verdicts borrow from it.

use super::{Policy, Route, RouteContext};
use crate::packet::chat::OwnName;
use crate::packet::{
    Dialect, KeySequence, Obfuscation, PacketLen, PacketSpec, PacketTable, PacketVersion,
    ServerOnlyReason, VARIABLE_LEN_MAX, VARIABLE_LEN_MIN, classify,
};

/// Bytes a connection buffers at most: two of the largest packet rAthena accepts.
pub const STREAM_BUFFER_BYTES: usize = 2 * VARIABLE_LEN_MAX as usize;

/// Why a connection stopped being classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DesyncReason {
    /// An id the version's table does not have (rAthena disconnects for it).
    #[error("unknown packet id {id:#06X}")]
    UnknownId {
        /// The de-obfuscated id.
        id: u16,
    },
    /// An id registered with a length rAthena refuses (0, or shorter than the id).
    #[error("packet id {id:#06X} has length {len}")]
    ZeroLength {
        /// The de-obfuscated id.
        id: u16,
        /// The registered length.
        len: u16,
    },
    /// A variable length outside 4..=32768.
    #[error("packet id {id:#06X} declares impossible length {len}")]
    ImpossibleLength {
        /// The de-obfuscated id.
        id: u16,
        /// The declared length.
        len: u16,
    },
}

/// What to do with the next piece of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// One framed packet.
    Packet(PacketVerdict<'a>),
    /// Classification ended at `offset`; `bytes` (everything buffered from there) go to the
    /// server untouched, as will every later byte ([`Verdict::PassThrough`]).
    Desync {
        /// Stream offset of the first unclassifiable byte.
        offset: u64,
        /// Why.
        reason: DesyncReason,
        /// Bytes to forward to the server as they are.
        bytes: &'a [u8],
    },
    /// Bytes after a desync (or of a connection that is never classified), for the server as
    /// they are.
    PassThrough {
        /// Stream offset of `bytes`.
        offset: u64,
        /// Bytes to forward to the server as they are.
        bytes: &'a [u8],
    },
}

impl Verdict<'_> {
    /// The bytes to write to the server now (empty for a packet routed to peers only).
    pub fn server_bytes(&self) -> &[u8] {
        match self {
            Verdict::Packet(p) => p.server_bytes,
            Verdict::Desync { bytes, .. } | Verdict::PassThrough { bytes, .. } => bytes,
        }
    }
}

/// One framed packet and where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketVerdict<'a> {
    /// Stream offset of the packet's first byte.
    pub offset: u64,
    /// The table row of its de-obfuscated id.
    pub spec: &'static PacketSpec,
    /// Its length in bytes.
    pub len: usize,
    /// Where it goes.
    pub route: Route<'a>,
    /// Why the classifier kept it off peers (a command, the mute emote, an NPC click, ...);
    /// `None` when it is peer-eligible and the policy and context chose the route.
    pub server_only: Option<ServerOnlyReason>,
    /// What to write to the server: the packet, its id re-obfuscated with the server's key
    /// sequence; empty when the route is [`Route::Peers`].
    pub server_bytes: &'a [u8],
    /// The packet after its 2-byte id (length field and fields): with [`PacketSpec::id`], what
    /// [`GameStream::server_copy`] needs to send a packet routed to peers to the server later.
    pub body: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next packet's bytes.
    Framing,
    /// The Desync verdict has been handed out; everything else passes through.
    PassingThrough,
}

/// One client-to-server connection. Call [`GameStream::push`] with the bytes the game sent, then
/// [`GameStream::next`] until it returns `None`; repeat ([`GameStream::feed`] does both).
/// Forward [`Verdict::server_bytes`] to the server in order, and each
/// [`Route::Peers`]/[`Route::ServerAndPeers`] event to peers.
#[derive(Clone, Debug)]
pub struct GameStream {
    table: &'static PacketTable,
    dialect: Dialect,
    client_key: KeySequence,
    server_key: KeySequence,
    buf: Vec<u8>,
    /// Index in `buf` of the first byte not yet handed out.
    start: usize,
    /// Stream offset of `buf[0]`.
    base_offset: u64,
    state: Phase,
    /// The sender's character name, once known.
    own_name: OwnName,
}

/// A character name that cannot be one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnNameError {
    /// Empty.
    #[error("character name is empty")]
    Empty,
    /// Longer than 23 bytes.
    #[error("character name is {len} bytes, more than 23")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Contains a NUL byte.
    #[error("character name contains a NUL byte")]
    ContainsNul,
}

impl GameStream {
    /// A map-server connection at `version`, with obfuscation on or off.
    pub fn new(version: PacketVersion, obfuscation: Obfuscation) -> GameStream {
        let key = KeySequence::new(version.obfuscation_keys(), obfuscation);
        GameStream::build(
            version.table(),
            Dialect::Map { nul_chat: version.chat_nul_terminated() },
            key,
        )
    }

    /// A map-server connection with rAthena's default obfuscation for `version`.
    pub fn with_default_obfuscation(version: PacketVersion) -> GameStream {
        let obfuscation =
            if version.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
        GameStream::new(version, obfuscation)
    }

    /// A login-server or char-server connection: framed for logging, but every packet is
    /// server-only.
    pub fn login_char() -> GameStream {
        let key = KeySequence::new(PacketVersion::V20211103.obfuscation_keys(), Obfuscation::Off);
        GameStream::build(PacketTable::login_char(), Dialect::LoginChar, key)
    }

    fn build(table: &'static PacketTable, dialect: Dialect, key: KeySequence) -> GameStream {
        GameStream {
            table,
            dialect,
            client_key: key,
            server_key: key,
            buf: Vec::with_capacity(STREAM_BUFFER_BYTES),
            start: 0,
            base_offset: 0,
            state: Phase::Framing,
            own_name: OwnName::UNKNOWN,
        }
    }

    /// Sets the sender's character name once known (e.g. from the server's greeting): public
    /// chat must then start with exactly `"<name> : "` to be peer-eligible, as rAthena requires.
    /// Until then a stricter rule applies (no `" : "` that could end a name may start a command).
    pub fn set_own_name(&mut self, name: &[u8]) -> Result<(), OwnNameError> {
        if name.is_empty() {
            return Err(OwnNameError::Empty);
        }
        if name.contains(&0) {
            return Err(OwnNameError::ContainsNul);
        }
        self.own_name = OwnName::new(name).ok_or(OwnNameError::TooLong { len: name.len() })?;
        Ok(())
    }

    /// Buffers bytes the game sent; returns how many it took. It takes all of them unless the
    /// buffer is full: then drain [`GameStream::next`] and push the rest.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        if self.start > 0 && self.buf.len() + bytes.len() > STREAM_BUFFER_BYTES {
            self.buf.drain(..self.start);
            self.base_offset += self.start as u64;
            self.start = 0;
        }
        let take = bytes.len().min(STREAM_BUFFER_BYTES - self.buf.len());
        self.buf.extend_from_slice(bytes.get(..take).unwrap_or_default());
        take
    }

    /// Pushes all of `bytes`, calling `on_verdict` for each verdict in order.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        policy: &Policy,
        ctx: &RouteContext,
        mut on_verdict: impl FnMut(Verdict<'_>),
    ) {
        loop {
            let taken = self.push(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            while let Some(v) = self.next(policy, ctx) {
                on_verdict(v);
            }
            if bytes.is_empty() {
                return;
            }
        }
    }

    /// Bytes buffered but not yet handed out: a partial packet waiting for the rest.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Stream offset of the first byte not yet handed out.
    pub fn offset(&self) -> u64 {
        self.base_offset + self.start as u64
    }

    /// Whether classification has ended (everything now passes to the server untouched).
    pub fn is_desynced(&self) -> bool {
        self.state == Phase::PassingThrough
    }

    /// The next verdict, or `None` when the buffered bytes do not hold a whole packet.
    #[inline]
    pub fn next(&mut self, policy: &Policy, ctx: &RouteContext) -> Option<Verdict<'_>> {
        let start = self.start;
        let offset = self.base_offset + start as u64;
        if self.state == Phase::PassingThrough {
            if start >= self.buf.len() {
                return None;
            }
            self.start = self.buf.len();
            return Some(Verdict::PassThrough { offset, bytes: self.buf.get(start..)? });
        }
        let available = self.buf.len().saturating_sub(start);
        let &[w0, w1] = self.buf.get(start..start + 2)? else { return None };
        let id = u16::from_le_bytes([w0, w1]) ^ self.client_key.mask();
        let Some(spec) = self.table.get(id) else {
            return Some(self.desync(DesyncReason::UnknownId { id }));
        };
        let len = match spec.len() {
            PacketLen::Fixed(n) if n >= 2 => usize::from(n),
            PacketLen::Fixed(n) => {
                return Some(self.desync(DesyncReason::ZeroLength { id, len: n }));
            }
            PacketLen::Variable => {
                let &[l0, l1] = self.buf.get(start + 2..start + 4)? else { return None };
                let n = u16::from_le_bytes([l0, l1]);
                if !(VARIABLE_LEN_MIN..=VARIABLE_LEN_MAX).contains(&n) {
                    return Some(self.desync(DesyncReason::ImpossibleLength { id, len: n }));
                }
                usize::from(n)
            }
        };
        if available < len {
            return None;
        }
        let end = start + len;
        let in_step = self.server_key == self.client_key;
        self.client_key.advance();
        self.start = end;
        if in_step {
            // The server's key equals the client's (always, without obfuscation): the wire id is
            // already what the server expects.
            let packet = self.buf.get(start..end)?;
            let classified = classify(self.dialect, &self.own_name, spec, packet);
            let server_only = classified.server_only_reason();
            let route = policy.route(classified, ctx);
            let server_bytes: &[u8] = if route.to_server() {
                self.server_key.advance();
                packet
            } else {
                &[]
            };
            let body = packet.get(2..).unwrap_or_default();
            let verdict =
                PacketVerdict { offset, spec, len, route, server_only, server_bytes, body };
            return Some(Verdict::Packet(verdict));
        }
        // Rare path: packets were diverted to peers on an obfuscated connection, so the server's
        // key lags behind the client's. Decide first; if the packet goes to the server,
        // re-obfuscate its id in place with the server's key, then classify the rewritten bytes
        // (the classifier reads only the de-obfuscated id, so the verdict is the same).
        let to_server = {
            let packet = self.buf.get(start..end)?;
            policy.route(classify(self.dialect, &self.own_name, spec, packet), ctx).to_server()
        };
        if to_server {
            let wire = (id ^ self.server_key.mask()).to_le_bytes();
            self.server_key.advance();
            if let Some(head) = self.buf.get_mut(start..start + 2) {
                head.copy_from_slice(&wire);
            }
        }
        let packet = self.buf.get(start..end)?;
        let classified = classify(self.dialect, &self.own_name, spec, packet);
        let server_only = classified.server_only_reason();
        let route = policy.route(classified, ctx);
        let server_bytes: &[u8] = if to_server { packet } else { &[] };
        let body = packet.get(2..).unwrap_or_default();
        Some(Verdict::Packet(PacketVerdict {
            offset,
            spec,
            len,
            route,
            server_only,
            server_bytes,
            body,
        }))
    }

    /// Appends to `out` a packet that an earlier verdict routed to peers only (`id`, the
    /// de-obfuscated id, and `body`, from its [`PacketVerdict`]), for the server now: its id
    /// obfuscated with the server's next key, which then advances, so the packets after it stay
    /// in step. Write `out` to the server before any later verdict's bytes. Returns `false` and
    /// appends nothing once the stream has desynced (its bytes pass through as they are, so
    /// nothing can be inserted between them).
    pub fn server_copy(&mut self, id: u16, body: &[u8], out: &mut Vec<u8>) -> bool {
        if self.state == Phase::PassingThrough {
            return false;
        }
        out.extend_from_slice(&(id ^ self.server_key.mask()).to_le_bytes());
        out.extend_from_slice(body);
        self.server_key.advance();
        true
    }

    fn desync(&mut self, reason: DesyncReason) -> Verdict<'_> {
        let start = self.start;
        let offset = self.base_offset + start as u64;
        self.state = Phase::PassingThrough;
        self.start = self.buf.len();
        Verdict::Desync { offset, reason, bytes: self.buf.get(start..).unwrap_or_default() }
    }
}
