//! Producers: turn real Dota 2 records into events and publish them.
