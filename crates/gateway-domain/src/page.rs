//! Cursor pagination. A cursor is opaque to clients (base64url of the sort key of the
//! last item returned), so the store can page with a `WHERE key > cursor` seek that
//! stays stable while rows are added or removed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Position after which the next page starts: the sort key of the last item seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<String>);

/// Why a cursor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not one this gateway issued")]
pub struct InvalidCursor;

/// Longest cursor accepted, so a hostile one cannot cost more than a few microseconds.
const MAX_CURSOR_LEN: usize = 2048;

impl Cursor {
    /// A cursor positioned after the item with this sort key.
    pub fn after(key: Vec<String>) -> Self {
        Self(key)
    }

    /// The sort key of the last item seen.
    pub fn key(&self) -> &[String] {
        &self.0
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(&self.0).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a cursor a client sent back; `arity` is the sort key length expected.
    pub fn decode(text: &str, arity: usize) -> Result<Self, InvalidCursor> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidCursor)?;
        let key: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| InvalidCursor)?;
        if key.len() != arity {
            return Err(InvalidCursor);
        }
        Ok(Self(key))
    }
}

/// What a caller asks of a listing: how many items, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page, already clamped to the allowed range.
    pub limit: u64,
    /// Where to start; the beginning when absent.
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Default page size.
    pub const DEFAULT_LIMIT: u64 = 50;
    /// Largest page size.
    pub const MAX_LIMIT: u64 = 500;

    /// Checks the size (1..=500).
    pub fn new(limit: Option<u64>, after: Option<Cursor>) -> Result<Self, String> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(format!(
                "must be between 1 and {}, got {limit}",
                Self::MAX_LIMIT
            ));
        }
        Ok(Self { limit, after })
    }
}

/// One page of results and the cursor of the next one (absent on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in the listing's stable order.
    pub items: Vec<T>,
    /// Cursor to pass to get the next page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched by the store: the extra row
    /// only proves that another page exists.
    pub fn from_overfetch(
        mut rows: Vec<T>,
        limit: u64,
        key_of: impl Fn(&T) -> Vec<String>,
    ) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::after(key_of(last)))
        } else {
            None
        };
        Self { items: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor::after(vec!["server".into(), "tool".into()]);
        assert_eq!(Cursor::decode(&cursor.encode(), 2), Ok(cursor));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        assert!(Cursor::decode("!!!", 1).is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("{}"), 1).is_err());
        assert!(Cursor::decode(&Cursor::after(vec!["a".into()]).encode(), 2).is_err());
        assert!(Cursor::decode(&"A".repeat(5000), 1).is_err());
    }

    #[test]
    fn overfetch_sets_the_next_cursor_only_when_more_exist() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, |n| vec![n.to_string()]);
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next, Some(Cursor::after(vec!["2".into()])));
        assert_eq!(
            Page::from_overfetch(vec![1, 2], 2, |n| vec![n.to_string()]).next,
            None
        );
    }

    #[test]
    fn page_size_is_bounded() {
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(501), None).is_err());
        assert_eq!(PageRequest::new(None, None).map(|p| p.limit), Ok(50));
    }

    proptest! {
        #[test]
        fn decode_never_panics(text in "\\PC{0,300}") {
            let _ = Cursor::decode(&text, 1);
        }
    }
}
