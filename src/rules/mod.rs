//! The rules: domain health and outage episodes from each domain's events, then the clears an
//! outage's recovery calls for, with the safeguards around them (loop guard, hourly cap,
//! approval, pause, dry run).

pub mod clear;
pub mod notify;
pub mod outage;
pub mod periodic;
pub mod worker;
