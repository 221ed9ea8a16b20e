//! Attaching a loaded BTF tracepoint program: the kernel's raw-tracepoint link, held here as a
//! plain descriptor (aya 0.14 keeps its links' descriptors private). A program stays attached
//! while any copy of its link descriptor is open, in whichever process holds it — which is what
//! lets the guard's loader helper attach the programs and hand the links over
//! ([`super::helper`]) — and closing the last copy detaches it.
use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use aya::programs::{BtfTracePoint, ProgramError};

/// `BPF_RAW_TRACEPOINT_OPEN` of the kernel UAPI's `enum bpf_cmd`.
const BPF_RAW_TRACEPOINT_OPEN: libc::c_int = 17;

/// The `raw_tracepoint` member of the UAPI's `union bpf_attr`: no name (a BTF tracepoint
/// program names its tracepoint by the BTF id it was loaded with), the program.
#[repr(C)]
#[derive(Debug, Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// One attached program: its descriptor (what `/proc/PID/fdinfo` counts runs on) and its link.
#[derive(Debug)]
pub struct Attached {
    /// The program's name in the object.
    pub name: String,
    /// The loaded program.
    pub program: OwnedFd,
    /// The link: closing its last copy detaches the program.
    pub link: OwnedFd,
}

/// Attaches `program` (loaded) to its BTF tracepoint; `name` names it in the object.
pub fn attach(name: &str, program: &BtfTracePoint) -> Result<Attached, ProgramError> {
    let program = program
        .fd()?
        .as_fd()
        .try_clone_to_owned()
        .map_err(|io_error| syscall_error("dup", io_error))?;
    let link = raw_tracepoint_open(program.as_fd())
        .map_err(|io_error| syscall_error("bpf_raw_tracepoint_open", io_error))?;
    Ok(Attached {
        name: name.to_owned(),
        program,
        link,
    })
}

fn syscall_error(call: &'static str, io_error: io::Error) -> ProgramError {
    ProgramError::SyscallError(aya::sys::SyscallError { call, io_error })
}

fn raw_tracepoint_open(program: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let attr = RawTracepointAttr {
        prog_fd: program.as_raw_fd().unsigned_abs(),
        ..RawTracepointAttr::default()
    };
    // SAFETY: `attr` is a live, initialised `RawTracepointAttr` (the UAPI layout of the
    // command's attributes, name 0: none) and the size passed is its own; the kernel only reads
    // it and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_RAW_TRACEPOINT_OPEN,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<RawTracepointAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: fd was just returned by a successful bpf(2) call and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
