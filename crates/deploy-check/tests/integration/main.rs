//! Tests of the deployment files and of the running stack (one test binary): the files with
//! the real tools (files.rs), the kustomization rendered and every reference in it resolved
//! (kustomize.rs), a live Prometheus scraping the five producers (live.rs), and
//! secrets that never leave the process but to their provider (secrets.rs), the topics script
//! over TLS and SASL (topics.rs).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

mod common;
mod files;
mod kustomize;
mod live;
mod secrets;
mod topics;
