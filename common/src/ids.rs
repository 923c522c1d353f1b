//! Identifier newtypes. No bare integers cross a crate boundary: a `LedgerId` cannot be
//! passed where an `EntryId` is expected.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

fn invalid(kind: &'static str, input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidId {
        kind,
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Identifies a ledger cluster-wide. Allocated from `ledgers/ids`; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LedgerId(pub u64);

/// Position of an entry within its ledger, from 0 upwards, without gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u64);

macro_rules! integer_id {
    ($ty:ident, $kind:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                s.parse::<u64>()
                    .map($ty)
                    .map_err(|e| invalid($kind, s, e.to_string()))
            }
        }

        impl From<u64> for $ty {
            fn from(v: u64) -> Self {
                $ty(v)
            }
        }
    };
}

integer_id!(LedgerId, "ledger id");
integer_id!(EntryId, "entry id");

/// Names a bookie. Used as a metadata key segment, so it may not contain `/` and must be
/// printable; by default it is the bookie's advertised `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookieId(String);

impl BookieId {
    /// Validates and wraps a bookie id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(invalid("bookie id", &id, "must not be empty"));
        }
        if id.len() > 255 {
            return Err(invalid("bookie id", &id, "longer than 255 bytes"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "bookie id",
                &id,
                format!("contains {c:?}; use letters, digits, '.', '-', '_' and ':'"),
            ));
        }
        Ok(BookieId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BookieId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BookieId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BookieId::new(s)
    }
}

/// An entry's address in a topic's chain of ledgers; Pulsar's message id is the same pair.
/// Ordered by ledger, then entry, which is the order of the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The ledger holding the entry.
    pub ledger: LedgerId,
    /// The entry within that ledger.
    pub entry: EntryId,
}

impl Position {
    /// After every position.
    pub const MAX: Position = Position {
        ledger: LedgerId(u64::MAX),
        entry: EntryId(u64::MAX),
    };

    /// The position of `entry` in `ledger`.
    pub fn new(ledger: LedgerId, entry: EntryId) -> Self {
        Position { ledger, entry }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ledger, self.entry)
    }
}

impl FromStr for Position {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (l, e) = s
            .split_once(':')
            .ok_or_else(|| invalid("position", s, "expected LEDGER:ENTRY"))?;
        let ledger = l
            .parse()
            .map_err(|_| invalid("position", s, "ledger part is not a number"))?;
        let entry = e
            .parse()
            .map_err(|_| invalid("position", s, "entry part is not a number"))?;
        Ok(Position { ledger, entry })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn position_round_trips(l in any::<u64>(), e in any::<u64>()) {
            let p = Position::new(LedgerId(l), EntryId(e));
            prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        }

        #[test]
        fn position_parse_never_panics(s in ".*") {
            let _ = s.parse::<Position>();
        }
    }

    #[test]
    fn position_orders_by_ledger_then_entry() {
        let a = Position::new(LedgerId(1), EntryId(99));
        let b = Position::new(LedgerId(2), EntryId(0));
        assert!(a < b);
    }

    #[test]
    fn bookie_id_rules() {
        assert!(BookieId::new("127.0.0.1:3181").is_ok());
        assert!(BookieId::new("").is_err());
        assert!(BookieId::new("a/b").is_err());
        assert!(BookieId::new("a b").is_err());
        assert!("x".repeat(256).parse::<BookieId>().is_err());
    }

    #[test]
    fn bad_ids_name_their_kind() {
        let err = "x".parse::<LedgerId>().unwrap_err().to_string();
        assert!(err.contains("ledger id"), "{err}");
    }
}
