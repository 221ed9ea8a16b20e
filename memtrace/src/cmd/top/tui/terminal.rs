//! The terminal while the interactive view runs: raw mode, the alternate screen and a hidden
//! cursor, all undone on every way out — [`Session`] restores them when dropped (a return, an
//! error, `?`), and the panic hook it installs restores them before the panic message is
//! printed, so the message lands on a usable terminal. Restoring twice is harmless.
use std::{
    io::{self, Write as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use ratatui::crossterm::{
    cursor::{Hide, Show},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};

/// The terminal in the view's modes, until dropped.
#[derive(Debug)]
pub struct Session {
    active: Arc<AtomicBool>,
}

/// Leaves the view's modes once (whoever comes first: the drop or the panic hook).
fn restore(active: &AtomicBool) {
    if active.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let mut out = io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, Show);
        let _ = out.flush();
    }
}

impl Session {
    /// Enters raw mode and the alternate screen, hides the cursor and installs the panic hook.
    pub fn enter() -> io::Result<Self> {
        let active = Arc::new(AtomicBool::new(true));
        let hooked = Arc::clone(&active);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore(&hooked);
            previous(info);
        }));
        let session = Self { active };
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(session)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        restore(&self.active);
    }
}
