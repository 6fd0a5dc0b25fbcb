//! sirocco: the application. Content cache, HTTP, the server loop joining a driver to the
//! netstack, the CLI's commands, and the netns lab.

// All unsafe code lives in the drivers crate (see its SAFETY notes).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod lab;
pub mod metrics;
pub mod reload;
pub mod runner;
pub mod server;
