//! Content rules for public chat (`CZ_REQUEST_CHAT`, `0x00F3`): which messages may be shown to
//! peers. The text is `"<own name> : <message>"`, handled as bytes (UTF-8 or the client's
//! codepage alike). Anything the server must see (an `@`/`#` command, a malformed or oversized
//! message) is rejected here and so stays server-only. When in doubt, reject: a rejected message
//! still reaches the server, which broadcasts it itself.

/// Longest character name in bytes (rAthena's `NAME_LENGTH` 24, minus the terminator).
pub const NAME_MAX_BYTES: usize = 23;
/// Longest message part in bytes, without terminator (rAthena rejects longer ones).
pub const MESSAGE_MAX_BYTES: usize = 254;
/// Longest whole chat text in bytes: name, `" : "`, message.
pub const TEXT_MAX_BYTES: usize = NAME_MAX_BYTES + SEPARATOR.len() + MESSAGE_MAX_BYTES;

const SEPARATOR: &[u8] = b" : ";

/// A character name held without allocation (empty = unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OwnName {
    bytes: [u8; NAME_MAX_BYTES],
    len: u8,
}

impl OwnName {
    /// No name known.
    pub(crate) const UNKNOWN: OwnName = OwnName { bytes: [0; NAME_MAX_BYTES], len: 0 };

    /// A name of 1..=23 bytes; `None` otherwise.
    pub(crate) fn new(name: &[u8]) -> Option<OwnName> {
        let mut bytes = [0; NAME_MAX_BYTES];
        bytes.get_mut(..name.len())?.copy_from_slice(name);
        Some(OwnName { bytes, len: u8::try_from(name.len()).ok()? })
    }

    /// The name, if known.
    pub(crate) fn get(&self) -> Option<&[u8]> {
        match self.len {
            0 => None,
            len => self.bytes.get(..usize::from(len)),
        }
    }
}

/// Why a public chat message is kept away from peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatRejection {
    /// The message part starts with an `@` or `#` command symbol.
    #[error("chat is an @/# command")]
    Command,
    /// No `"Name : "` prefix with a name of 1..=23 bytes.
    #[error("chat lacks the \"Name : \" prefix")]
    MissingNamePrefix,
    /// The prefix is not the sender's own character name.
    #[error("chat prefix is not the sender's name")]
    NotOwnName,
    /// The message part is empty.
    #[error("chat message is empty")]
    EmptyMessage,
    /// Text or message longer than rAthena accepts.
    #[error("chat text too long")]
    TooLong,
    /// A NUL byte inside the text.
    #[error("chat text contains a NUL byte")]
    EmbeddedNul,
    /// A version that NUL-terminates chat sent text without exactly one final NUL.
    #[error("chat text is not NUL-terminated as this PACKETVER requires")]
    MissingNul,
}

/// The chat text of a public chat packet body (the bytes after the 4-byte header), without its
/// terminator. `nul_terminated`: the PACKETVER sends a final NUL (before 20151001). `own_name`:
/// the sender's character name, when known (see [`check_public_text`]).
pub fn public_chat_text<'a>(
    body: &'a [u8],
    nul_terminated: bool,
    own_name: Option<&[u8]>,
) -> Result<&'a [u8], ChatRejection> {
    let text = if nul_terminated {
        match body.split_last() {
            Some((0, text)) => text,
            _ => return Err(ChatRejection::MissingNul),
        }
    } else {
        body
    };
    check_public_text(text, own_name)?;
    Ok(text)
}

/// Checks a public chat text (no terminator). With `own_name`, the prefix must be exactly that
/// name; without it, every `" : "` that could end a name is treated as a possible start of the
/// message, and none of them may start a command.
pub fn check_public_text(text: &[u8], own_name: Option<&[u8]>) -> Result<(), ChatRejection> {
    if text.len() > TEXT_MAX_BYTES {
        return Err(ChatRejection::TooLong);
    }
    if text.contains(&0) {
        return Err(ChatRejection::EmbeddedNul);
    }
    if let Some(name) = own_name {
        let message = text
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(SEPARATOR))
            .ok_or(ChatRejection::NotOwnName)?;
        return check_message(message);
    }
    let mut first = true;
    let mut at = 0;
    while let Some(pos) = find(text.get(at..).unwrap_or_default(), SEPARATOR) {
        let name_end = at + pos;
        if name_end > NAME_MAX_BYTES {
            break;
        }
        let message = text.get(name_end + SEPARATOR.len()..).unwrap_or_default();
        if name_end > 0 {
            if first {
                check_message(message)?;
                first = false;
            } else if is_command(message) {
                return Err(ChatRejection::Command);
            }
        }
        at = name_end + 1;
    }
    if first { Err(ChatRejection::MissingNamePrefix) } else { Ok(()) }
}

fn check_message(message: &[u8]) -> Result<(), ChatRejection> {
    if message.is_empty() {
        return Err(ChatRejection::EmptyMessage);
    }
    if message.len() > MESSAGE_MAX_BYTES {
        return Err(ChatRejection::TooLong);
    }
    if is_command(message) {
        return Err(ChatRejection::Command);
    }
    Ok(())
}

/// A message is a command when its first non-blank byte is a command symbol (rAthena's defaults
/// `@` and `#`; leading blanks are skipped to stay on the safe side).
fn is_command(message: &[u8]) -> bool {
    matches!(message.iter().find(|&&b| b != b' ' && b != b'\t'), Some(b'@' | b'#'))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_public_chat_is_accepted() {
        assert_eq!(check_public_text(b"Alice : hello there", None), Ok(()));
        assert_eq!(check_public_text(b"Alice : hi", Some(b"Alice")), Ok(()));
    }

    #[test]
    fn commands_after_the_name_prefix_are_rejected() {
        assert_eq!(check_public_text(b"Alice : @warp prontera", None), Err(ChatRejection::Command));
        assert_eq!(check_public_text(b"Alice : #kick Bob", None), Err(ChatRejection::Command));
        assert_eq!(check_public_text(b"Alice :  @go 0", None), Err(ChatRejection::Command));
        // A name containing " : " could hide where the message really starts.
        assert_eq!(check_public_text(b"A : B : @go 0", None), Err(ChatRejection::Command));
        assert_eq!(check_public_text(b"Alice : mail me @ home", None), Ok(()));
    }

    #[test]
    fn malformed_texts_are_rejected() {
        assert_eq!(check_public_text(b"no prefix", None), Err(ChatRejection::MissingNamePrefix));
        assert_eq!(check_public_text(b" : hi", None), Err(ChatRejection::MissingNamePrefix));
        assert_eq!(check_public_text(b"Alice : ", None), Err(ChatRejection::EmptyMessage));
        assert_eq!(check_public_text(b"Alice : a\0b", None), Err(ChatRejection::EmbeddedNul));
        assert_eq!(check_public_text(b"Bob : hi", Some(b"Alice")), Err(ChatRejection::NotOwnName));
        let long = [b"Alice : ".as_slice(), &[b'x'; MESSAGE_MAX_BYTES + 1]].concat();
        assert_eq!(check_public_text(&long, None), Err(ChatRejection::TooLong));
        let name_too_long = [&[b'n'; NAME_MAX_BYTES + 1][..], b" : hi"].concat();
        assert_eq!(check_public_text(&name_too_long, None), Err(ChatRejection::MissingNamePrefix));
    }

    #[test]
    fn terminator_rule_follows_the_version() {
        assert_eq!(public_chat_text(b"Al : hi\0", true, None), Ok(&b"Al : hi"[..]));
        assert_eq!(public_chat_text(b"Al : hi", true, None), Err(ChatRejection::MissingNul));
        assert_eq!(public_chat_text(b"Al : hi", false, None), Ok(&b"Al : hi"[..]));
        assert_eq!(public_chat_text(b"Al : hi\0", false, None), Err(ChatRejection::EmbeddedNul));
        assert_eq!(public_chat_text(b"Al : hi", false, Some(b"Al")), Ok(&b"Al : hi"[..]));
        assert_eq!(
            public_chat_text(b"Al : hi", false, Some(b"Bo")),
            Err(ChatRejection::NotOwnName)
        );
    }
}
