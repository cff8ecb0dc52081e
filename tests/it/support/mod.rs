//! Real servers that integration tests send to.

pub mod receiver;
