//! Integration tests: the real binary, the Okta client against a fake Okta org, and the
//! notification sender against a verifying receiver, all on 127.0.0.1.

mod crash;
mod forward_send;
mod hostile;
mod ingest;
mod logscan;
mod notifications;
mod okta_client;
mod operator;
mod ops;
mod poller;
mod properties;
mod rules;
mod storage;
mod tls;
mod tokens;
// Each test file uses only part of the shared support code.
#[allow(dead_code)]
mod support;
