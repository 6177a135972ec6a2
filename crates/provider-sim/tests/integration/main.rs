//! provider-sim's integration tests (one binary): the Polygon tape's REST history against what
//! its WebSocket streams (history.rs).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

mod history;
