//! Swap on this host: what is active ([`active`], /proc/swaps), how much this RAM should have
//! ([`plan`]), whether a directory can hold a swap file ([`fs`]), the file itself with mkswap,
//! swapon and swapoff ([`file`]), and its `/etc/fstab` line ([`fstab`]).
pub mod active;
pub mod file;
pub mod fs;
pub mod fstab;
pub mod plan;
