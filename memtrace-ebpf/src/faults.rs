//! User page faults, batched per CPU: a run of faults by one process on one CPU costs one
//! per-CPU array access and an increment each; the hash map is touched only when the faulting
//! process changes on that CPU.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};

use crate::maps::{FAULT_SLOTS, flush_fault_slot};

// tp_btf/page_fault_user:
//   TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)
// Only the faulting task (current) is used.
#[btf_tracepoint(function = "page_fault_user")]
pub fn page_fault_user(_ctx: BtfTracePointContext) -> i32 {
    try_page_fault_user();
    0
}

#[inline(always)]
fn try_page_fault_user() {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(slot) = FAULT_SLOTS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: slot is this CPU's FAULT_SLOTS value; no other program writes it concurrently on
    // this CPU (tracing programs do not nest on one CPU for the same hook).
    unsafe {
        if (*slot).tgid == tgid {
            (*slot).pending += 1;
            return;
        }
        flush_fault_slot(slot);
        (*slot).tgid = tgid;
        (*slot).pending = 1;
    }
}
