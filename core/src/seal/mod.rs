//! Sealed peer frames: AES-256-GCM around every game packet a client sends to another peer.
//!
//! The coordinator hands each session a [`SessionKey`] (epoch + 256-bit key) and rotates it.
//! A client seals what it sends with one [`Sealer`] and opens what each remote peer sends with
//! one [`Opener`] per peer. Every frame carries a small header (version, flags, key epoch, a
//! random stream id and a 64-bit counter) that is authenticated as associated data. Keys are
//! derived per (epoch, stream, sender) with HKDF-SHA256, which binds a frame to its sender and
//! keeps nonces unique although all members share the session key. The opener drops replays
//! with an RFC 6479 sliding window, keeps the previous epoch for a grace period after a
//! rotation, rate-limits frames with a token bucket, and counts every drop by reason. Payloads
//! over the compression threshold are compressed with LZ4 first. The byte layout is in
//! `docs/peer-frames.md`.
//!
//! This is a codec with state rather than a [`crate::SansIo`] machine: it has no timers and
//! produces exactly one result per call, so the peer link calls [`Sealer::seal`] and
//! [`Opener::open`] directly, passing the current [`Instant`].

mod bucket;
mod replay;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use serde::Serialize;
use sha2::Sha256;

use crate::wire::{PeerId, SessionKey};
use crate::{Instant, Rng};
use bucket::TokenBucket;
use replay::{Refusal, ReplayWindow};

pub use replay::REPLAY_WINDOW_BITS;

/// The frame format version this build writes and reads.
pub const SEAL_VERSION: u8 = 1;
/// Header length: version (1), flags (1), epoch (4), stream (8), counter (8).
pub const HEADER_BYTES: usize = 22;
/// Length of the GCM tag at the end of a frame.
pub const TAG_BYTES: usize = 16;
/// Bytes a frame adds to an uncompressed payload.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;
/// Flag bit: the payload was LZ4-compressed (and starts with its 4-byte original length).
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag bit: the sender wants a [`crate::packet::PeerAck`] for this frame (it sent the action
/// to peers only and sends it to the server late unless every peer confirms it).
pub const FLAG_ACK_WANTED: u8 = 0x02;
/// Every flag bit this build knows.
const FLAGS_KNOWN: u8 = FLAG_COMPRESSED | FLAG_ACK_WANTED;
/// How many sender restarts (new streams) one epoch tolerates before frames on new streams
/// are refused until the next rotation.
pub const STREAMS_PER_EPOCH_MAX: usize = 16;

const KDF_SALT: &[u8] = b"ro-p2p seal v1";
const SIZE_PREFIX_BYTES: usize = 4;

/// Tunables of sealing and opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealConfig {
    /// Payloads longer than this are compressed (if that makes them smaller).
    pub compression_threshold_bytes: usize,
    /// Largest payload sealed or opened (after decompression).
    pub payload_bytes_max: usize,
    /// How long the previous epoch stays accepted after a rotation.
    pub epoch_grace_ms: u64,
    /// Frames per second accepted from one peer, sustained.
    pub rate_per_s: u32,
    /// Frames accepted from one peer at once.
    pub rate_burst: u32,
}

impl Default for SealConfig {
    fn default() -> Self {
        SealConfig {
            compression_threshold_bytes: 1024,
            payload_bytes_max: 64 * 1024,
            epoch_grace_ms: 30_000,
            rate_per_s: 500,
            rate_burst: 1000,
        }
    }
}

impl SealConfig {
    /// The longest frame an [`Opener`] looks at: compression is only used when it shrinks the
    /// payload, so no frame is longer than the largest payload plus the overhead.
    pub fn frame_bytes_max(&self) -> usize {
        self.payload_bytes_max.saturating_add(OVERHEAD_BYTES)
    }
}

/// Why a payload could not be sealed, or a key not installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The payload is over [`SealConfig::payload_bytes_max`].
    #[error("payload of {len} bytes is over the limit of {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Every counter of this epoch and stream was used; wait for the next key.
    #[error("counter space of epoch {epoch} is exhausted; a new key is needed")]
    CounterExhausted {
        /// The epoch.
        epoch: u32,
    },
    /// A key was installed whose epoch is not newer than the current one.
    #[error("key epoch {given} is not newer than the current epoch {current}")]
    EpochNotNewer {
        /// The current epoch.
        current: u32,
        /// The epoch offered.
        given: u32,
    },
}

/// Why a received frame was dropped. Each has a counter in [`OpenCounters`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Longer than [`SealConfig::frame_bytes_max`].
    #[error("frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer sent more frames than its token bucket allows.
    #[error("peer is over its frame rate limit")]
    RateLimited,
    /// Shorter than a header and a tag.
    #[error("frame of {len} bytes is shorter than the minimum of {min}")]
    TooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A format version this build does not read.
    #[error("unknown frame version {version}")]
    UnknownVersion {
        /// The version byte.
        version: u8,
    },
    /// Flag bits this version does not define.
    #[error("unknown flag bits {flags:#04x}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// An epoch that is neither the current nor the previous one.
    #[error("unknown key epoch {epoch}")]
    UnknownEpoch {
        /// The epoch in the frame.
        epoch: u32,
    },
    /// The previous epoch, after its grace period ended.
    #[error("key epoch {epoch} expired")]
    EpochExpired {
        /// The epoch in the frame.
        epoch: u32,
    },
    /// A stream the sender already replaced (frames from before a sender restart).
    #[error("stream {stream:#018x} was replaced by a newer one")]
    RetiredStream {
        /// The stream id.
        stream: u64,
    },
    /// Too many sender restarts in one epoch.
    #[error("more than {STREAMS_PER_EPOCH_MAX} streams in epoch {epoch}")]
    TooManyStreams {
        /// The epoch.
        epoch: u32,
    },
    /// A counter already accepted.
    #[error("counter {counter} was already received")]
    Replayed {
        /// The counter.
        counter: u64,
    },
    /// A counter behind the replay window.
    #[error("counter {counter} is behind the replay window")]
    TooOld {
        /// The counter.
        counter: u64,
    },
    /// The tag does not verify: tampered, wrong key, or sealed by another sender.
    #[error("authentication failed")]
    AuthFailed,
    /// The compressed payload does not decompress to its announced length.
    #[error("compressed payload is corrupt")]
    BadCompression,
    /// The compressed payload announces more than [`SealConfig::payload_bytes_max`].
    #[error("decompressed size {len} is over the limit of {max}")]
    DecompressedTooLarge {
        /// The announced size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Frames opened and dropped by reason, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpenCounters {
    /// Frames accepted.
    pub opened: u64,
    /// [`OpenError::FrameTooLarge`].
    pub frame_too_large: u64,
    /// [`OpenError::RateLimited`].
    pub rate_limited: u64,
    /// [`OpenError::TooShort`].
    pub too_short: u64,
    /// [`OpenError::UnknownVersion`] and [`OpenError::UnknownFlags`].
    pub bad_header: u64,
    /// [`OpenError::UnknownEpoch`].
    pub unknown_epoch: u64,
    /// [`OpenError::EpochExpired`].
    pub epoch_expired: u64,
    /// [`OpenError::RetiredStream`] and [`OpenError::TooManyStreams`].
    pub bad_stream: u64,
    /// [`OpenError::Replayed`].
    pub replayed: u64,
    /// [`OpenError::TooOld`].
    pub too_old: u64,
    /// [`OpenError::AuthFailed`].
    pub auth_failed: u64,
    /// [`OpenError::BadCompression`] and [`OpenError::DecompressedTooLarge`].
    pub bad_compression: u64,
}

impl OpenCounters {
    /// All frames dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.frame_too_large
            + self.rate_limited
            + self.too_short
            + self.bad_header
            + self.unknown_epoch
            + self.epoch_expired
            + self.bad_stream
            + self.replayed
            + self.too_old
            + self.auth_failed
            + self.bad_compression
    }

    fn record(&mut self, result: &Result<Vec<u8>, OpenError>) {
        let slot = match result {
            Ok(_) => &mut self.opened,
            Err(OpenError::FrameTooLarge { .. }) => &mut self.frame_too_large,
            Err(OpenError::RateLimited) => &mut self.rate_limited,
            Err(OpenError::TooShort { .. }) => &mut self.too_short,
            Err(OpenError::UnknownVersion { .. } | OpenError::UnknownFlags { .. }) => {
                &mut self.bad_header
            }
            Err(OpenError::UnknownEpoch { .. }) => &mut self.unknown_epoch,
            Err(OpenError::EpochExpired { .. }) => &mut self.epoch_expired,
            Err(OpenError::RetiredStream { .. } | OpenError::TooManyStreams { .. }) => {
                &mut self.bad_stream
            }
            Err(OpenError::Replayed { .. }) => &mut self.replayed,
            Err(OpenError::TooOld { .. }) => &mut self.too_old,
            Err(OpenError::AuthFailed) => &mut self.auth_failed,
            Err(OpenError::BadCompression | OpenError::DecompressedTooLarge { .. }) => {
                &mut self.bad_compression
            }
        };
        *slot = slot.saturating_add(1);
    }
}

/// The authenticated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    flags: u8,
    epoch: u32,
    stream: u64,
    counter: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0] = SEAL_VERSION;
        out[1] = self.flags;
        out[2..6].copy_from_slice(&self.epoch.to_be_bytes());
        out[6..14].copy_from_slice(&self.stream.to_be_bytes());
        out[14..22].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<Header, OpenError> {
        let [version, flags, rest @ ..] = bytes;
        if *version != SEAL_VERSION {
            return Err(OpenError::UnknownVersion { version: *version });
        }
        if flags & !FLAGS_KNOWN != 0 {
            return Err(OpenError::UnknownFlags { flags: *flags });
        }
        let (epoch, rest) = split_be::<4>(rest);
        let (stream, counter) = split_be::<8>(rest);
        let (counter, _) = split_be::<8>(counter);
        Ok(Header {
            flags: *flags,
            epoch: u32::from_be_bytes(epoch),
            stream: u64::from_be_bytes(stream),
            counter: u64::from_be_bytes(counter),
        })
    }

    /// The GCM nonce: epoch (4 bytes) then counter (8 bytes), big-endian. Unique per key,
    /// because each key belongs to one (epoch, stream, sender) and the counter never repeats.
    fn nonce(&self) -> Nonce<Aes256Gcm> {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.epoch.to_be_bytes());
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n.into()
    }
}

/// Which frame of a sender's stream a frame is: what a [`crate::packet::PeerAck`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FrameId {
    /// The key epoch it was sealed under.
    pub epoch: u32,
    /// The sender's stream (a new sealer, e.g. in a new session, starts a new one and counts
    /// from 0 again).
    pub stream: u64,
    /// Its counter in the sender's stream.
    pub counter: u64,
}

/// The id of a frame and whether its sender wants an acknowledgement, read from its header.
/// Only meaningful for a frame that [`Opener::open`] accepted (the header is authenticated
/// there, not here); `None` for bytes shorter than a header or of another version.
pub fn frame_id(frame: &[u8]) -> Option<(FrameId, bool)> {
    let head = frame.first_chunk::<HEADER_BYTES>()?;
    let header = Header::decode(head).ok()?;
    let id = FrameId { epoch: header.epoch, stream: header.stream, counter: header.counter };
    Some((id, header.flags & FLAG_ACK_WANTED != 0))
}

/// The first `N` bytes of `b` as an array (zero-padded if short, which the fixed header
/// layout rules out) and the rest.
fn split_be<const N: usize>(b: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0u8; N];
    let n = N.min(b.len());
    out[..n].copy_from_slice(&b[..n]);
    (out, &b[n..])
}

/// The AES-256-GCM key of one (epoch, stream, sender): HKDF-SHA256 with the session key as
/// input keying material and `epoch || stream || sender id` as info.
fn derive_cipher(session_key: &[u8; 32], epoch: u32, stream: u64, sender: &PeerId) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), session_key);
    let mut okm = [0u8; 32];
    let info: [&[u8]; 3] =
        [&epoch.to_be_bytes(), &stream.to_be_bytes(), sender.as_str().as_bytes()];
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so this cannot fail; if it
    // did, the all-zero key would only make every tag fail, never leak.
    let _ = hk.expand_multi_info(&info, &mut okm);
    Aes256Gcm::new(&okm.into())
}

/// Seals the frames one client sends to its peers (one per client, shared by all its links).
///
/// Drop it and build a new one after a restart: the new random stream id gives fresh keys,
/// so counters may start again at zero without ever reusing a nonce.
pub struct Sealer {
    sender: PeerId,
    session_key: [u8; 32],
    epoch: u32,
    stream: u64,
    cipher: Aes256Gcm,
    next_counter: u64,
    config: SealConfig,
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sealer")
            .field("sender", &self.sender)
            .field("epoch", &self.epoch)
            .field("stream", &self.stream)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for frames sent by `own_id`, under `key`, with a stream id drawn from `rng`.
    pub fn new(own_id: PeerId, key: &SessionKey, rng: &mut Rng, config: SealConfig) -> Sealer {
        let stream = rng.next_u64();
        Sealer {
            cipher: derive_cipher(&key.key, key.epoch, stream, &own_id),
            sender: own_id,
            session_key: key.key,
            epoch: key.epoch,
            stream,
            next_counter: 0,
            config,
        }
    }

    /// The epoch frames are sealed under.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Switches to a newer key (after `key-rotated`); counters start again at zero.
    pub fn rotate(&mut self, key: &SessionKey) -> Result<(), SealError> {
        if key.epoch <= self.epoch {
            return Err(SealError::EpochNotNewer { current: self.epoch, given: key.epoch });
        }
        self.cipher = derive_cipher(&key.key, key.epoch, self.stream, &self.sender);
        self.session_key = key.key;
        self.epoch = key.epoch;
        self.next_counter = 0;
        Ok(())
    }

    /// Seals one payload into a frame, compressing it first when it is over the threshold
    /// and compression helps.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_flagged(payload, 0)
    }

    /// As [`Sealer::seal`], with [`FLAG_ACK_WANTED`] set: the receiver answers with a
    /// [`crate::packet::PeerAck`] naming the frame's [`FrameId`].
    pub fn seal_wanting_ack(&mut self, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_flagged(payload, FLAG_ACK_WANTED)
    }

    fn seal_flagged(&mut self, payload: &[u8], extra_flags: u8) -> Result<Vec<u8>, SealError> {
        let max = self.config.payload_bytes_max;
        if payload.len() > max {
            return Err(SealError::PayloadTooLarge { len: payload.len(), max });
        }
        // The last counter is never used, so "exhausted" needs no extra state.
        if self.next_counter == u64::MAX {
            return Err(SealError::CounterExhausted { epoch: self.epoch });
        }
        let mut flags = extra_flags;
        let mut compressed = None;
        if payload.len() > self.config.compression_threshold_bytes {
            let block = lz4_flex::block::compress(payload);
            if block.len() + SIZE_PREFIX_BYTES < payload.len() {
                flags |= FLAG_COMPRESSED;
                compressed = Some(block);
            }
        }
        let header =
            Header { flags, epoch: self.epoch, stream: self.stream, counter: self.next_counter };
        let aad = header.encode();
        let body_len = compressed.as_ref().map_or(payload.len(), |c| c.len() + SIZE_PREFIX_BYTES);
        let mut frame = Vec::with_capacity(HEADER_BYTES + body_len + TAG_BYTES);
        frame.extend_from_slice(&aad);
        match &compressed {
            Some(block) => {
                // Payloads are at most `payload_bytes_max`, far below 4 GiB.
                let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                frame.extend_from_slice(&len.to_le_bytes());
                frame.extend_from_slice(block);
            }
            None => frame.extend_from_slice(payload),
        }
        let tag = self
            .cipher
            .encrypt_inout_detached(&header.nonce(), &aad, (&mut frame[HEADER_BYTES..]).into())
            // GCM refuses only messages over 64 GiB, which the size check above rules out.
            .map_err(|_| SealError::PayloadTooLarge { len: payload.len(), max })?;
        frame.extend_from_slice(&tag);
        self.next_counter += 1;
        Ok(frame)
    }
}

/// One sender's stream within an epoch.
struct Stream {
    id: u64,
    cipher: Aes256Gcm,
    window: ReplayWindow,
}

/// The state of one key epoch at the receiver.
struct EpochKeys {
    epoch: u32,
    session_key: [u8; 32],
    current: Option<Stream>,
    /// Streams replaced by a newer one; bounded by [`STREAMS_PER_EPOCH_MAX`].
    retired: Vec<u64>,
}

impl EpochKeys {
    fn new(key: &SessionKey) -> Self {
        EpochKeys { epoch: key.epoch, session_key: key.key, current: None, retired: Vec::new() }
    }
}

/// Opens the frames of one remote sender: checks, authenticates, de-duplicates, decompresses
/// and counts.
pub struct Opener {
    sender: PeerId,
    current: EpochKeys,
    /// The epoch before the current one and when it stops being accepted.
    previous: Option<(EpochKeys, Instant)>,
    bucket: TokenBucket,
    counters: OpenCounters,
    config: SealConfig,
}

impl core::fmt::Debug for Opener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opener")
            .field("sender", &self.sender)
            .field("epoch", &self.current.epoch)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for frames from `sender`, under `key`.
    pub fn new(now: Instant, sender: PeerId, key: &SessionKey, config: SealConfig) -> Opener {
        Opener {
            sender,
            current: EpochKeys::new(key),
            previous: None,
            bucket: TokenBucket::new(now, config.rate_per_s, config.rate_burst),
            counters: OpenCounters::default(),
            config,
        }
    }

    /// The newest epoch accepted.
    pub fn epoch(&self) -> u32 {
        self.current.epoch
    }

    /// Frames opened and dropped so far.
    pub fn counters(&self) -> &OpenCounters {
        &self.counters
    }

    /// Installs a newer key (after `key-rotated`); the current epoch stays accepted until
    /// `now + epoch_grace_ms`. The same key again is a no-op.
    pub fn rotate(&mut self, now: Instant, key: &SessionKey) -> Result<(), SealError> {
        if key.epoch == self.current.epoch && key.key == self.current.session_key {
            return Ok(());
        }
        if key.epoch <= self.current.epoch {
            return Err(SealError::EpochNotNewer { current: self.current.epoch, given: key.epoch });
        }
        let old = core::mem::replace(&mut self.current, EpochKeys::new(key));
        self.previous = Some((old, now.add_millis(self.config.epoch_grace_ms)));
        Ok(())
    }

    /// Opens one frame; a dropped frame gives its reason and is counted.
    pub fn open(&mut self, now: Instant, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        let result = self.open_inner(now, frame);
        self.counters.record(&result);
        result
    }

    fn open_inner(&mut self, now: Instant, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        let sender = &self.sender;
        let max = self.config.frame_bytes_max();
        if frame.len() > max {
            return Err(OpenError::FrameTooLarge { len: frame.len(), max });
        }
        // Before any crypto, so a flood costs little.
        if !self.bucket.try_take(now) {
            return Err(OpenError::RateLimited);
        }
        let Some((head, rest)) = frame.split_first_chunk::<HEADER_BYTES>() else {
            return Err(OpenError::TooShort { len: frame.len(), min: OVERHEAD_BYTES });
        };
        let Some((body, tag)) = rest.split_last_chunk::<TAG_BYTES>() else {
            return Err(OpenError::TooShort { len: frame.len(), min: OVERHEAD_BYTES });
        };
        let header = Header::decode(head)?;
        let keys = keys_for(&mut self.current, &mut self.previous, now, header.epoch)?;
        let tag: Tag<Aes256Gcm> = (*tag).into();
        let mut plain = body.to_vec();
        let nonce = header.nonce();
        match keys.current.as_mut().filter(|s| s.id == header.stream) {
            Some(stream) => {
                stream.window.check(header.counter).map_err(|r| refusal(r, header.counter))?;
                stream
                    .cipher
                    .decrypt_inout_detached(&nonce, head, (&mut plain[..]).into(), &tag)
                    .map_err(|_| OpenError::AuthFailed)?;
                stream.window.accept(header.counter);
            }
            None => {
                if keys.retired.contains(&header.stream) {
                    return Err(OpenError::RetiredStream { stream: header.stream });
                }
                if keys.retired.len() >= STREAMS_PER_EPOCH_MAX {
                    return Err(OpenError::TooManyStreams { epoch: keys.epoch });
                }
                let cipher = derive_cipher(&keys.session_key, keys.epoch, header.stream, sender);
                cipher
                    .decrypt_inout_detached(&nonce, head, (&mut plain[..]).into(), &tag)
                    .map_err(|_| OpenError::AuthFailed)?;
                // An authentic frame on a new stream: the sender restarted. Frames of its
                // old stream are refused from now on.
                let mut window = ReplayWindow::new();
                window.accept(header.counter);
                let new = Stream { id: header.stream, cipher, window };
                if let Some(old) = keys.current.replace(new) {
                    keys.retired.push(old.id);
                }
            }
        }
        if header.flags & FLAG_COMPRESSED != 0 {
            decompress(&plain, self.config.payload_bytes_max)
        } else {
            Ok(plain)
        }
    }
}

/// The keys of `epoch`: the current ones, or the previous ones inside their grace period.
fn keys_for<'a>(
    current: &'a mut EpochKeys,
    previous: &'a mut Option<(EpochKeys, Instant)>,
    now: Instant,
    epoch: u32,
) -> Result<&'a mut EpochKeys, OpenError> {
    if epoch == current.epoch {
        return Ok(current);
    }
    match previous {
        Some((keys, expires)) if keys.epoch == epoch => {
            if now < *expires {
                Ok(keys)
            } else {
                Err(OpenError::EpochExpired { epoch })
            }
        }
        _ => Err(OpenError::UnknownEpoch { epoch }),
    }
}

fn refusal(r: Refusal, counter: u64) -> OpenError {
    match r {
        Refusal::Replayed => OpenError::Replayed { counter },
        Refusal::TooOld => OpenError::TooOld { counter },
    }
}

/// Undoes the sealer's compression: a 4-byte little-endian original length, then an LZ4
/// block. The length is checked against the limit before anything is allocated.
fn decompress(body: &[u8], max: usize) -> Result<Vec<u8>, OpenError> {
    let Some((len, block)) = body.split_first_chunk::<SIZE_PREFIX_BYTES>() else {
        return Err(OpenError::BadCompression);
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > max {
        return Err(OpenError::DecompressedTooLarge { len, max });
    }
    let mut out = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == len => Ok(out),
        _ => Err(OpenError::BadCompression),
    }
}

#[cfg(test)]
mod tests;
