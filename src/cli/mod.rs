//! The `bump` binary's commands, one file per command family, each with its arguments and
//! its printing: [`send`], [`get`] (get, watch), [`packets`] (import, export), [`status`]
//! (status, mix, peers, stop), [`mix`] (keygen, tag, mixes), [`name`], and [`demo`]. The
//! command line's shape is in [`args`]; [`ctx`] resolves where the node is. `bump node` itself
//! is [`bump::settings`] (flags + bump.conf) and [`bump::daemon`].

pub mod args;
pub mod ctx;
#[cfg(feature = "demo")]
pub mod demo;
pub mod get;
pub mod mix;
pub mod name;
pub mod packets;
pub mod sealed;
pub mod send;
pub mod speakeasy;
pub mod status;
