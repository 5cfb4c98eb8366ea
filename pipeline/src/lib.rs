//! Scoutstream runtime.
