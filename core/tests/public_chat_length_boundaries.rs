//! The length boundaries of public chat, at exactly the maximum and one byte more (issue 22:
//! mutation testing found that no test sent a message of exactly the maximum length).
//! rAthena: a name of at most 23 bytes (`NAME_LENGTH` 24 with the terminator), `" : "`, a
//! message of at most 254 bytes; anything longer is the server's to refuse, never a peer's.

use ro_p2p_core::packet::chat::{
    ChatRejection, MESSAGE_MAX_BYTES, NAME_MAX_BYTES, TEXT_MAX_BYTES, check_public_text,
};

fn text(name_len: usize, message_len: usize) -> Vec<u8> {
    let mut t = vec![b'n'; name_len];
    t.extend_from_slice(b" : ");
    t.extend(std::iter::repeat_n(b'm', message_len));
    t
}

#[test]
fn the_limits_are_rathenas() {
    assert_eq!((NAME_MAX_BYTES, MESSAGE_MAX_BYTES, TEXT_MAX_BYTES), (23, 254, 280));
}

#[test]
fn the_longest_name_and_message_pass_and_one_byte_more_does_not() {
    let longest = text(NAME_MAX_BYTES, MESSAGE_MAX_BYTES);
    assert_eq!(longest.len(), TEXT_MAX_BYTES);
    assert_eq!(check_public_text(&longest, None), Ok(()));
    assert_eq!(check_public_text(&longest, Some(&[b'n'; NAME_MAX_BYTES])), Ok(()));
    // One byte more in the message.
    let over = text(NAME_MAX_BYTES, MESSAGE_MAX_BYTES + 1);
    assert_eq!(check_public_text(&over, None), Err(ChatRejection::TooLong));
    assert_eq!(
        check_public_text(&over, Some(&[b'n'; NAME_MAX_BYTES])),
        Err(ChatRejection::TooLong)
    );
    // The longest message after a short name, and one byte more.
    assert_eq!(check_public_text(&text(1, MESSAGE_MAX_BYTES), None), Ok(()));
    assert_eq!(
        check_public_text(&text(1, MESSAGE_MAX_BYTES + 1), Some(b"n")),
        Err(ChatRejection::TooLong)
    );
}

#[test]
fn a_name_one_byte_too_long_is_no_name() {
    // Name of 24 bytes: its separator cannot end a name, so there is no message.
    assert_eq!(
        check_public_text(&text(NAME_MAX_BYTES + 1, 5), None),
        Err(ChatRejection::MissingNamePrefix)
    );
    assert_eq!(check_public_text(&text(NAME_MAX_BYTES, 5), None), Ok(()));
}

#[test]
fn a_text_over_the_maximum_is_too_long_whatever_it_holds() {
    for len in [TEXT_MAX_BYTES + 1, TEXT_MAX_BYTES + 2, 4 * TEXT_MAX_BYTES] {
        let mut t = vec![b'a'; len];
        // A separator far past any name: without the length check this would be "no name".
        t[40..43].copy_from_slice(b" : ");
        assert_eq!(check_public_text(&t, None), Err(ChatRejection::TooLong), "{len} bytes");
    }
}
