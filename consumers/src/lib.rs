//! Consumer groups of scoutstream.
