//! The position a stream can resume from, as a string a client stores (SSE `id:`, the
//! long-poll `cursor`): `<epoch>-<position>`.
//!
//! One stream carries many symbols, so a per-symbol `seq` cannot say where it is. The engine
//! assigns every tick a global publish *position* beside its `seq`; "everything up to
//! position P of my symbols" is exact, and the epoch says which sequence of positions P
//! belongs to. Positions are assigned by one authority (the publishing engine) so the same
//! cursor means the same thing on every node that shares that engine's ticks.

use std::fmt;

/// A parsed cursor: everything at or before `position` in `epoch` has been seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The epoch the position belongs to.
    pub epoch: String,
    /// The newest publish position the client has seen (0: nothing yet).
    pub position: u64,
}

/// Why a cursor cannot be resumed from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not of the form `<epoch>-<position>`.
    #[error("unreadable cursor")]
    Unreadable,
    /// Well-formed, but from an epoch other than the current one.
    #[error("cursor is from another epoch")]
    OtherEpoch,
}

impl Cursor {
    /// Parses `text` and checks it belongs to `current_epoch`.
    ///
    /// # Errors
    /// [`CursorError::Unreadable`] or [`CursorError::OtherEpoch`]; either way the client
    /// gets a `reset` and snapshots.
    pub fn parse_in(text: &str, current_epoch: &str) -> Result<u64, CursorError> {
        let (epoch, position) = text.trim().rsplit_once('-').ok_or(CursorError::Unreadable)?;
        if epoch.is_empty() || position.is_empty() || !position.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError::Unreadable);
        }
        let position = position.parse().map_err(|_| CursorError::Unreadable)?;
        if epoch != current_epoch {
            return Err(CursorError::OtherEpoch);
        }
        Ok(position)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_its_epoch() {
        let text = Cursor { epoch: "3fa9c2".into(), position: 1042 }.to_string();
        assert_eq!(text, "3fa9c2-1042");
        assert_eq!(Cursor::parse_in(&text, "3fa9c2"), Ok(1042));
    }

    #[test]
    fn other_epoch_and_garbage_are_told_apart() {
        assert_eq!(Cursor::parse_in("aaaa-5", "bbbb"), Err(CursorError::OtherEpoch));
        for bad in ["", "5", "-5", "abc-", "abc-x1", "abc-+5", "abc-99999999999999999999999"] {
            assert_eq!(Cursor::parse_in(bad, "abc"), Err(CursorError::Unreadable), "{bad}");
        }
    }
}
