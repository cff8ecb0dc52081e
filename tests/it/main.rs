//! Integration tests: the real binary, the Okta client against a fake Okta org, and the
//! notification sender against a verifying receiver, all on 127.0.0.1.

mod forward_send;
mod ingest;
mod notifications;
mod okta_client;
mod operator;
mod ops;
mod poller;
mod rules;
mod tls;
mod tokens;
// Each test file uses only part of the shared support code.
#[allow(dead_code)]
mod support;
