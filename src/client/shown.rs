// SPDX-License-Identifier: GPL-2.0-or-later
//! Text from the command line as an error message quotes it: a name of
//! 70 kB would otherwise be echoed whole into a terminal or a log.

use std::borrow::Cow;
use std::path::Path;

/// How many characters of a name an error message quotes.
pub const SHOWN_CHARS: usize = 64;

/// `text` whole when it is short; else its first [`SHOWN_CHARS`]
/// characters, `...` and its length, enough to recognise it.
pub fn shown(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}... ({} bytes)", &text[..cut], text.len())),
    }
}

/// A path as [`shown`] quotes text.
pub fn shown_path(path: &Path) -> String {
    shown(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_whole_and_long_text_is_cut_with_its_length() {
        assert_eq!(shown("sas,5001405000000001"), "sas,5001405000000001");
        let exactly = "a".repeat(SHOWN_CHARS);
        assert_eq!(shown(&exactly), exactly.as_str());
        let long = format!("iqn.{}", "é".repeat(35_000));
        let cut = shown(&long);
        assert!(cut.starts_with("iqn.éé"));
        assert!(cut.ends_with("... (70004 bytes)"), "{cut}");
        assert_eq!(cut.chars().count(), SHOWN_CHARS + "... (70004 bytes)".len());
    }
}
