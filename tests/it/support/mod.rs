//! Real servers and the service itself, started on 127.0.0.1 for the integration tests.

pub mod app;
pub mod fake_okta;
pub mod receiver;
