//! Integration tests: the Okta client against a fake Okta org on 127.0.0.1.

mod okta_client;
mod support;
