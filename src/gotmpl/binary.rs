//! Go's strings hold any bytes, and ESO's templates rely on it: `b64dec` of a PKCS #12 archive
//! yields bytes that are not UTF-8, which `pkcs12key` then reads. Our strings are UTF-8, so a
//! byte that is not part of valid UTF-8 travels as one character from the last 256 code points
//! of Unicode (plane 16, private use: U+10FF00 + the byte) and becomes that byte again when the
//! template's output is written. Text that already holds one of those characters has each of its
//! bytes escaped the same way, so bytes → text → bytes is exact for every input.

use std::borrow::Cow;

const BASE: u32 = 0x10_FF00;

fn escaped(b: u8) -> char {
    // BASE + 0..=255 stays within U+10FF00..=U+10FFFF, all valid scalar values.
    char::from_u32(BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn is_escape(c: char) -> bool {
    (BASE..=BASE + 0xFF).contains(&u32::from(c))
}

/// The text a template sees for `bytes`.
pub fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape(c) {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escaped));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(escaped));
    }
    out
}

/// The bytes `text` stands for.
pub fn bytes(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(is_escape) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_escape(c) {
            out.push((u32::from(c) - BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// `text` as a string for a place that takes only text (a label, an annotation).
pub fn utf8(text: String) -> Result<String, String> {
    match bytes(&text) {
        Cow::Borrowed(_) => Ok(text),
        Cow::Owned(b) => String::from_utf8(b).map_err(|_| "the rendered text is not UTF-8".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_passes_through() {
        assert_eq!(text("héllo".as_bytes()), "héllo");
        assert!(matches!(bytes("héllo"), Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_bytes_round_trip() {
        let raw = [0x30, 0x82, 0xff, 0x00, b'a', 0xc3];
        let t = text(&raw);
        assert_eq!(t.chars().count(), raw.len());
        assert_eq!(&*bytes(&t), &raw);
        assert!(utf8(t).is_err());
    }

    #[test]
    fn escape_characters_in_the_input_round_trip() {
        let raw = "a\u{10FF41}b".as_bytes();
        let t = text(raw);
        assert_ne!(t, "a\u{10FF41}b");
        assert_eq!(&*bytes(&t), raw);
        assert_eq!(utf8(t).unwrap(), "a\u{10FF41}b");
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let t = text(&raw);
            prop_assert_eq!(&*bytes(&t), &raw[..]);
        }
    }
}
