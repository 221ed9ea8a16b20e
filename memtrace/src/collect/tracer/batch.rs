//! Reads a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): a few system calls per
//! read instead of two per entry (aya's iterator: `get_next_key`, then a lookup), which with ~600
//! processes was a thousand `bpf` calls per refresh. aya 0.14 has no batch operations, so the
//! command is issued here; where the kernel lacks it the caller falls back to the iterator.
use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData},
};

/// `BPF_MAP_LOOKUP_BATCH` of the kernel UAPI's `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_int = 24;

/// `ENOTSUPP`, the kernel-internal "not supported" that map types without batch operations
/// return (it has no libc name).
const ENOTSUPP: i32 = 524;

/// Entries asked for by the first call (a hash map's batch never splits a bucket: a bucket
/// larger than what is left makes the call fail with `ENOSPC`, and the buffer grows).
const FIRST_COUNT: usize = 1024;

/// The most entries one call is given room for (far above any bucket's length).
const MAX_COUNT: usize = 1 << 20;

/// The `batch` member of the UAPI's `union bpf_attr`; the kernel zero-fills the rest of the
/// union and checks that nothing after `flags` is set.
#[repr(C)]
#[derive(Debug, Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Why a batch read failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// This kernel (or map type) has no batch lookup: read entry by entry instead.
    #[error("no batch lookup on this kernel ({0})")]
    Unsupported(io::Error),
    /// The command failed.
    #[error("batch lookup: {0}")]
    Io(io::Error),
}

/// What one call of the command did.
enum Step {
    /// `count` entries were copied and more may follow from the returned position.
    More,
    /// The last entries were copied.
    Done,
}

/// One `BPF_MAP_LOOKUP_BATCH` call; `attr.count` is updated to the entries copied.
fn lookup_batch(attr: &mut BatchAttr) -> io::Result<Step> {
    // SAFETY: `attr` is a live, initialised `BatchAttr` (the UAPI layout of the command's
    // attributes) and the size passed is its own; the kernel reads it and writes back only
    // `count` and the `out_batch` position. The key, value and position pointers it holds point
    // to buffers the caller sized for `attr.count` entries of the map's key and value sizes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            std::ptr::from_mut(attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if ret >= 0 {
        return Ok(Step::More);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT) => Ok(Step::Done),
        _ => Err(err),
    }
}

/// Every entry of `map`, appended to `keys` and `values` (the same length, in the map's bucket
/// order); the number of system calls it took. Entries added or removed meanwhile may or may not
/// be included, as with the iterator.
pub fn lookup_all<T: std::borrow::Borrow<MapData>, K: Pod, V: Pod>(
    map: &HashMap<T, K, V>,
    keys: &mut Vec<K>,
    values: &mut Vec<V>,
) -> Result<usize, BatchError> {
    // A descriptor is never negative.
    let map_fd = map.map().fd().as_fd().as_raw_fd().unsigned_abs();
    let start = keys.len();
    debug_assert_eq!(start, values.len());
    let mut position: u32 = 0;
    let mut next: u32 = 0;
    let mut first = true;
    let mut want = FIRST_COUNT;
    let mut calls = 0;
    loop {
        keys.reserve(want);
        values.reserve(want);
        let room = (keys.capacity() - keys.len()).min(values.capacity() - values.len());
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut position) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr().wrapping_add(keys.len()) as u64,
            values: values.as_mut_ptr().wrapping_add(values.len()) as u64,
            count: u32::try_from(room).unwrap_or(u32::MAX),
            map_fd,
            ..BatchAttr::default()
        };
        let step = lookup_batch(&mut attr);
        calls += 1;
        // The kernel reports how many entries it copied when the call succeeds and when it ends
        // the iteration; on any other error nothing counts (an unknown command leaves `count`).
        let copied = match step {
            Ok(_) => (attr.count as usize).min(room),
            Err(_) => 0,
        };
        // SAFETY: the kernel wrote `copied` (≤ room, within the reserved capacity) whole entries
        // of the map's key and value sizes, which `HashMap::try_from` checked equal
        // `size_of::<K>()` and `size_of::<V>()`; `Pod` types are valid for any bytes.
        unsafe {
            keys.set_len(keys.len() + copied);
            values.set_len(values.len() + copied);
        }
        match step {
            Ok(Step::Done) => return Ok(calls),
            Ok(Step::More) => {
                position = next;
                first = false;
                want = want.max(keys.len() - start);
            }
            // A bucket holds more entries than there was room for: ask again with more room.
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) && want < MAX_COUNT => {
                want = want.saturating_mul(2);
            }
            Err(err)
                if first
                    && keys.len() == start
                    && matches!(
                        err.raw_os_error(),
                        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | ENOTSUPP)
                    ) =>
            {
                return Err(BatchError::Unsupported(err));
            }
            Err(err) => return Err(BatchError::Io(err)),
        }
    }
}
