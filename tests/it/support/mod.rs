//! Test servers shared by the integration tests.

pub mod fake_okta;
